//! The SYN proxy's part of the FullNAT engine (`forward::synproxy` holds the cookies and the
//! held data): a client's SYN answered with a cookie, its ACK checked and turned into the real
//! server's SYN, the packets of a connection whose server has not answered yet, and the SYN sent
//! again when the server answers from an earlier connection's TIME_WAIT.

use super::*;

impl Forwarder {
    /// The shifts of connection `id` if the SYN proxy opened it and its server has answered
    /// (None for any other connection): what its segments, the ICMP errors quoting them
    /// (`synproxy::unshift_quote`) and its translation record for a backup
    /// (`install::push_with_template`) are shifted by.
    pub(super) fn proxied_adj(&self, id: ConnId) -> Option<synproxy::SeqAdj> {
        let proxied = self.table.get(id)?.ext() & PROXIED != 0;
        let p = self
            .synproxy
            .get(id.index())
            .filter(|p| proxied && !p.pending)?;
        Some(p.adj)
    }

    /// Answers a client's SYN to a proxied service with a SYN-ACK carrying a cookie, written over
    /// the SYN; nothing is kept.
    pub(super) fn answer_syn<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        mut pkt: B,
        v: &Ipv4In,
        client: &Tuple,
    ) -> Verdict<B> {
        let ip = &v.ip;
        let (l3_off, end) = (v.l3_off, v.l3_off + ip.total_len as usize);
        let (seq, opts) = {
            let seg = &pkt.data()[ip.l4_off..end];
            (
                TcpPacket::new_unchecked(seg).seq(),
                synproxy::SynOptions::parse(seg),
            )
        };
        let sp = &mut self.synproxy;
        let cookie = sp.key.make(client, seq, l3.now_ms / 1000, opts.mss_index());
        // Without timestamps the client's window scale and SACK-permitted cannot be remembered,
        // so neither is offered (as Linux's syncookies).
        let ts = opts.tsval.map(|tsval| {
            (
                synproxy::encode_ts(l3.now_ms, opts.wscale, opts.sack),
                tsval,
            )
        });
        let answer = synproxy::Segment {
            src: (ip.dst, ip.dst_port),
            dst: (ip.src, ip.src_port),
            seq: cookie,
            ack: seq.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: u16::MAX,
            mss: Some(sp.cfg.mss.unwrap_or(self.mtu.saturating_sub(40))),
            wscale: ts.and(opts.wscale).map(|_| sp.cfg.wscale),
            sack_permitted: ts.is_some() && opts.sack,
            ts,
        };
        let Some(len) = write_in_place(&mut pkt, l3_off, &answer, 0) else {
            return Verdict::Drop(Drop::NoRoom.into(), pkt);
        };
        pkt.set_len((l3_off + len).max(crate::wire::ethernet::MIN_FRAME_LEN));
        sp.stats.cookies_sent += 1;
        l3.route_out(pkt, ip.src)
    }

    /// What the client's SYN offered, if its ACK proves our cookie.
    pub(super) fn check_cookie<B: PacketBuf>(
        &mut self,
        pkt: &B,
        v: &Ipv4In,
        client: &Tuple,
        now_ms: u64,
    ) -> Option<synproxy::ClientSyn> {
        let ip = &v.ip;
        let seg = &pkt.data()[ip.l4_off..v.l3_off + ip.total_len as usize];
        let t = TcpPacket::new_unchecked(seg);
        let sp = &mut self.synproxy;
        let syn = synproxy::validate(
            &sp.key,
            client,
            t.seq(),
            t.ack_number(),
            synproxy::timestamps(seg),
            now_ms / 1000,
        );
        if syn.is_some() {
            sp.stats.cookies_valid += 1;
        } else {
            sp.stats.cookies_invalid += 1;
        }
        syn
    }

    /// A client's ACK proved its cookie and connection `id` was made for it: the ACK becomes the
    /// client's SYN as the real server is to see it (the options the cookie carried), forwarded
    /// like any client's SYN (TOA, rewrite, route). Data the ACK carried waits for the server.
    pub(super) fn open_proxied<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        mut pkt: B,
        v: &Ipv4In,
        id: ConnId,
        syn: synproxy::ClientSyn,
        now: Ticks,
    ) -> Verdict<B> {
        let ip = &v.ip;
        let (l3_off, end) = (v.l3_off, v.l3_off + ip.total_len as usize);
        let client = Tuple::new(ip.src, ip.src_port, ip.dst, ip.dst_port, ip.protocol.0);
        let (ack, window, hl) = {
            let t = TcpPacket::new_unchecked(&pkt.data()[ip.l4_off..end]);
            (t.ack_number(), t.window(), t.header_len())
        };
        let sp = &mut self.synproxy;
        let data = &pkt.data()[ip.l4_off + hl..end];
        if !data.is_empty() {
            if sp.stash(id.index(), client.into(), l3.now_ms, data) {
                sp.stats.data_held += 1;
            } else {
                // The client retransmits it once the server's answer is acknowledged to it.
                l3.stats.drop(Drop::SynProxyHeldFull.into());
            }
        }
        let opened = synproxy::Proxied::opened(&syn, ack, window, sp.cfg.wscale);
        if let Some(p) = sp.get_mut(id.index()) {
            *p = opened;
        }
        sp.stats.conns += 1;
        if let Some(c) = self.table.get_mut(id) {
            c.set_ext(c.ext() | PROXIED);
            // The client never sends us this SYN again: nothing to retry it on (`syn_retry`).
            c.set_flags(RETRIED);
        }
        let Some(request) = sp
            .get(id.index())
            .map(|p| p.syn((ip.src, ip.src_port), (ip.dst, ip.dst_port)))
        else {
            return Verdict::Drop(Drop::NoConn.into(), pkt);
        };
        let Some(len) = write_in_place(&mut pkt, l3_off, &request, 0) else {
            return Verdict::Drop(Drop::NoRoom.into(), pkt);
        };
        pkt.set_len(l3_off + len);
        self.forward_rebuilt(l3, pkt, id, Dir::Original, now)
    }

    /// Forwards a segment the proxy wrote over a received frame, parsing it again for `forward`.
    pub(super) fn forward_rebuilt<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        id: ConnId,
        dir: Dir,
        now: Ticks,
    ) -> Verdict<B> {
        let parsed = match crate::wire::parse_l3l4_with(pkt.data(), false) {
            Ok(p) => p,
            Err(r) => return Verdict::Drop(r.into(), pkt),
        };
        let Some(ip) = parsed.ip else {
            return Verdict::Drop(Drop::NoConn.into(), pkt);
        };
        let v = Ipv4In {
            l3_off: parsed.l3_off,
            ip,
        };
        self.forward(l3, pkt, &v, id, dir, now)
    }

    /// A packet of proxied connection `id` before its real server answered: the client's are
    /// held; the server's SYN-ACK sets the translation up and completes its handshake, its RST
    /// goes to the client. `Err(pkt)`: forward it as usual (the SYN the proxy sends, a RST).
    pub(super) fn proxy_pending<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        mut pkt: B,
        v: &Ipv4In,
        id: ConnId,
        dir: Dir,
        now: Ticks,
    ) -> Result<Verdict<B>, B> {
        let ip = &v.ip;
        let f = ip.tcp_flags;
        let Some(client) = self.table.get(id).map(|c| c.client()) else {
            return Ok(Verdict::Drop(Drop::NoConn.into(), pkt));
        };
        if dir == Dir::Original {
            if f.syn() {
                return Err(pkt);
            }
            let deadline = l3.now_ms + synproxy::HOLD_MS;
            return Ok(
                match l3.parked.park(id.index(), client.into(), deadline, pkt) {
                    Ok(()) => {
                        self.synproxy.stats.held += 1;
                        Verdict::Held
                    }
                    Err(pkt) => Verdict::Drop(Drop::SynProxyHeldFull.into(), pkt),
                },
            );
        }
        let (l3_off, end) = (v.l3_off, v.l3_off + ip.total_len as usize);
        let Some(mut p) = self.synproxy.get(id.index()).copied() else {
            return Ok(Verdict::Drop(Drop::NoConn.into(), pkt));
        };
        let (seq, ack, server_ts, server_ws) = {
            let seg = &pkt.data()[ip.l4_off..end];
            let t = TcpPacket::new_unchecked(seg);
            (
                t.seq(),
                t.ack_number(),
                synproxy::timestamps(seg),
                synproxy::window_scale(seg),
            )
        };
        if f.rst() {
            p.refused(seq);
            if let Some(s) = self.synproxy.get_mut(id.index()) {
                *s = p;
            }
            return Err(pkt);
        }
        if !(f.syn() && f.ack()) || ack != p.client_isn.wrapping_add(1) {
            if f.ack()
                && !f.syn()
                && ack != p.client_isn.wrapping_add(1)
                && p.resent < synproxy::SYN_RESENDS
            {
                return Ok(self.resend_syn(l3, pkt, ip, id, p, ack));
            }
            return Ok(Verdict::Drop(Drop::NoConn.into(), pkt));
        }
        // The SYN-ACK becomes the client's ACK as the server expects it, with the data of the
        // client's handshake ACK if it had any; forwarded like any client packet, it completes
        // the server's handshake.
        let mut completion = p.answered(
            seq,
            server_ts,
            server_ws,
            (client.src_ip(), client.sport),
            (client.dst_ip(), client.dport),
        );
        if let Some(s) = self.synproxy.get_mut(id.index()) {
            *s = p;
        }
        self.synproxy.stats.server_answered += 1;
        // Passive health: the server answered.
        self.server_handshake(id, f);
        if let Some(c) = self.table.get_mut(id) {
            c.user2 = ack;
        }
        let at = l3_off + ipv4::HEADER_LEN + completion.header_len();
        let n = match pkt.room_mut().get_mut(at..) {
            Some(room) => self.synproxy.unstash(id.index(), &client.into(), room),
            None => 0,
        };
        if n > 0 {
            completion.flags = TcpFlags::ACK | TcpFlags::PSH;
        }
        let Some(len) = write_in_place(&mut pkt, l3_off, &completion, n) else {
            return Ok(Verdict::Drop(Drop::NoRoom.into(), pkt));
        };
        pkt.set_len(l3_off + len);
        // Not from the client's neighbour: nothing to confirm (`L3::confirm_neighbour`).
        crate::wire::EthernetFrame::new_unchecked(pkt.data_mut())
            .set_src(crate::wire::MacAddr([0; 6]));
        let verdict = self.forward_rebuilt(l3, pkt, id, Dir::Original, now);
        // Then what the client sent meanwhile, in order.
        while let Some(held) = l3.parked.take(id.index(), &client.into()) {
            let v = self.forward_rebuilt(l3, held, id, Dir::Original, now);
            l3.settle_later(v);
        }
        Ok(verdict)
    }

    /// The server answered the proxy's SYN with an ACK of something else: RFC 9293 3.10.7.3
    /// (SYN-SENT) answers it with <SEQ=SEG.ACK><CTL=RST>, as the client's own TCP would. It is
    /// the answer of a TIME_WAIT the server keeps of an earlier connection on the same
    /// LIP:lport (RFC 7323's PAWS refused our SYN: the client's timestamps are not that
    /// connection's), which the RST ends (Linux, `tcp_rfc1337` 0); the SYN sent again right
    /// after it then finds the listener. The proxy has nothing else that would send the SYN
    /// again, and the client, established with the proxy, only retransmits its data.
    pub(super) fn resend_syn<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        ip: &crate::wire::IpInfo,
        id: ConnId,
        mut p: synproxy::Proxied,
        ack: u32,
    ) -> Verdict<B> {
        let Some(c) = self.table.get(id) else {
            return Verdict::Drop(Drop::NoConn.into(), pkt);
        };
        let client = c.client();
        let toa = self
            .services
            .services
            .get(c.svc as usize)
            .is_some_and(|vs| vs.toa);
        // Both generated, in this order (`L3::generate` keeps it): the RST ends the TIME_WAIT
        // before the SYN reaches it. Neither without room for both: the SYN alone would meet
        // the TIME_WAIT again; the RST alone would leave nothing to send the SYN again.
        if l3.generate_room() < 2 {
            return Verdict::Drop(Drop::GenOverflow.into(), pkt);
        }
        let (local, server) = ((ip.dst, ip.dst_port), (ip.src, ip.src_port));
        let syn = p.syn(local, server);
        // With TOA as the first SYN had it (`forward_body`: its MSS lowered by the option).
        let write_syn = |b: &mut [u8]| {
            let n = syn.write(b, 0)?;
            match toa {
                true => tcp::insert_toa(b, n, 0, client.sport, client.src_ip(), true).ok(),
                false => Some(n),
            }
        };
        if send_rst(l3, local, server, ack, None, None)
            && l3.generate_ipv4(server.0, None, write_syn)
        {
            p.resent += 1;
            if let Some(s) = self.synproxy.get_mut(id.index()) {
                *s = p;
            }
            self.synproxy.stats.syn_resent += 1;
            self.stats.toa_added += u64::from(toa);
        }
        Verdict::Done(pkt)
    }
}
