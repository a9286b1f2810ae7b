//! Building replies: the parameters a client gets from its scopes, the options packed into
//! the reply, and where the reply goes (relay, broadcast, unicast or link-layer to the MAC).

use std::net::Ipv4Addr;

use super::{fqdn, Action, Client, Dest, Engine, Iface, Reply};
use crate::conf::options::Chunk;
use crate::conf::{Addr, Params};
use crate::wire::*;

impl Engine {
    /// Parameters for a client on a subnet (and pool).
    pub(super) fn params(&self, subnet: usize, pool: Option<usize>, c: &Client) -> Params {
        let mut scopes = self.cfg.chain(self.cfg.subnets[subnet].scope);
        if let Some(pl) = pool {
            scopes.push(self.cfg.pools[pl].scope);
        }
        for &cl in &c.classes {
            scopes.push(self.cfg.classes[cl].scope);
        }
        scopes.extend(&c.subclasses);
        if let Some(h) = c.host {
            for s in self.cfg.chain(self.cfg.hosts[h].scope) {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
        }
        let mut p = Params::default();
        self.cfg.eval(&scopes, &c.view, &mut p);
        if p.use_host_decl_names {
            if let Some(h) = c.host {
                p.options.entry(OPT_HOST_NAME).or_insert_with(|| {
                    vec![Chunk::Bytes(self.cfg.hosts[h].name.clone().into_bytes())]
                });
            }
        }
        p
    }

    pub(super) fn lease_time(p: &Params, msg: &Msg) -> u32 {
        let requested = match msg.option(OPT_LEASE_TIME) {
            Some(v) if v.len() == 4 => Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            _ => None,
        };
        let max = p.max_lease.max(p.min_lease);
        requested.unwrap_or(p.default_lease).clamp(p.min_lease, max)
    }

    pub(super) fn bytes(&self, chunks: &[Chunk]) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        for c in chunks {
            match c {
                Chunk::Bytes(b) => v.extend_from_slice(b),
                Chunk::Host(h) => v.extend_from_slice(&self.resolved.get(h)?.octets()),
            }
        }
        Some(v)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        &self,
        msg: &Msg,
        kind: MsgType,
        yiaddr: Ipv4Addr,
        subnet: usize,
        p: &Params,
        sid: Ipv4Addr,
        lease: Option<u32>,
    ) -> Msg {
        let mut opts: Vec<(u8, Vec<u8>)> = vec![
            (OPT_MSG_TYPE, vec![kind as u8]),
            (OPT_SERVER_ID, sid.octets().to_vec()),
        ];
        if let Some(lt) = lease {
            opts.push((OPT_LEASE_TIME, lt.to_be_bytes().to_vec()));
            opts.push((OPT_T1, (lt / 2).to_be_bytes().to_vec()));
            opts.push((OPT_T2, ((lt as u64 * 7 / 8) as u32).to_be_bytes().to_vec()));
        }
        let mask = p
            .options
            .get(&OPT_SUBNET_MASK)
            .and_then(|c| self.bytes(c))
            .unwrap_or_else(|| self.cfg.subnets[subnet].mask.octets().to_vec());
        opts.push((OPT_SUBNET_MASK, mask));
        let fixed = [
            OPT_MSG_TYPE,
            OPT_SERVER_ID,
            OPT_LEASE_TIME,
            OPT_T1,
            OPT_T2,
            OPT_SUBNET_MASK,
        ];
        let next_server = match &p.next_server {
            Some(Addr::Ip(ip)) => Some(*ip),
            Some(Addr::Name(n)) => self.resolved.get(n).copied(),
            None => None,
        };
        let push = |code: u8, opts: &mut Vec<(u8, Vec<u8>)>| {
            if fixed.contains(&code) || opts.iter().any(|(c, _)| *c == code) {
                return;
            }
            if let Some(v) = p.options.get(&code).and_then(|c| self.bytes(c)) {
                opts.push((code, v));
                return;
            }
            if let Some(v) = self.encapsulated(p, code) {
                opts.push((code, v));
                return;
            }
            match code {
                OPT_BOOTFILE => {
                    if let Some(f) = &p.filename {
                        opts.push((code, f.clone().into_bytes()));
                    }
                }
                OPT_TFTP_SERVER => {
                    if let Some(n) = p
                        .server_name
                        .clone()
                        .or_else(|| next_server.map(|a| a.to_string()))
                    {
                        opts.push((code, n.into_bytes()));
                    }
                }
                _ => {}
            }
        };
        match msg.option(OPT_PRL) {
            Some(prl) => {
                for &code in prl {
                    push(code, &mut opts);
                }
            }
            None => {
                for &code in p.options.keys() {
                    push(code, &mut opts);
                }
                for code in self.encapsulating_codes(p) {
                    push(code, &mut opts);
                }
            }
        }
        if let Some(f) = &p.fqdn_reply {
            opts.push((fqdn::OPT_FQDN, f.clone())); // as ISC: whether asked for or not
        }
        if let Some(rai) = msg.option(OPT_RELAY_AGENT) {
            opts.push((OPT_RELAY_AGENT, rai.to_vec()));
        }
        Msg {
            op: BOOTREPLY,
            htype: msg.htype,
            hlen: msg.hlen,
            hops: 0,
            xid: msg.xid,
            secs: 0,
            flags: msg.flags,
            ciaddr: if kind == MsgType::Ack && !msg.ciaddr.is_unspecified() {
                msg.ciaddr
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            yiaddr,
            siaddr: next_server.unwrap_or(Ipv4Addr::UNSPECIFIED),
            giaddr: msg.giaddr,
            chaddr: msg.chaddr,
            sname: p.server_name.clone().unwrap_or_default().into_bytes(),
            file: p.filename.clone().unwrap_or_default().into_bytes(),
            options: opts,
        }
    }

    pub(super) fn max_len(msg: &Msg) -> usize {
        match msg.option(OPT_MAX_SIZE) {
            Some(v) if v.len() == 2 => (u16::from_be_bytes([v[0], v[1]]) as usize).clamp(576, 1500),
            _ => 576,
        }
    }

    pub(super) fn dest(msg: &Msg, kind: MsgType, yiaddr: Ipv4Addr, p: &Params) -> Dest {
        if !msg.giaddr.is_unspecified() {
            return Dest::Relay(msg.giaddr);
        }
        if kind == MsgType::Nak {
            return Dest::Broadcast;
        }
        if !msg.ciaddr.is_unspecified() {
            return Dest::Unicast(msg.ciaddr);
        }
        if msg.broadcast_flag() || p.always_broadcast || yiaddr.is_unspecified() {
            return Dest::Broadcast;
        }
        match msg.mac() {
            Some(mac) => Dest::Link { ip: yiaddr, mac },
            None => Dest::Broadcast,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply(
        &self,
        msg: &Msg,
        kind: MsgType,
        yiaddr: Ipv4Addr,
        subnet: usize,
        p: &Params,
        sid: Ipv4Addr,
        lease: Option<u32>,
    ) -> Reply {
        let mut m = self.build(msg, kind, yiaddr, subnet, p, sid, lease);
        let dest = Engine::dest(msg, kind, yiaddr, p);
        if kind == MsgType::Nak {
            m.siaddr = Ipv4Addr::UNSPECIFIED;
            m.sname.clear();
            m.file.clear();
            m.options
                .retain(|(c, _)| matches!(*c, OPT_MSG_TYPE | OPT_SERVER_ID | OPT_RELAY_AGENT));
            m.options
                .push((OPT_MESSAGE, b"requested address not available".to_vec()));
            if !msg.giaddr.is_unspecified() {
                m.flags |= 0x8000;
            }
        }
        Reply {
            bytes: m.encode(Engine::max_len(msg)),
            dest,
            kind,
            bootp: false,
        }
    }

    pub(super) fn nak(&self, msg: &Msg, subnet: Option<usize>, sid: Ipv4Addr) -> Action {
        let p = Params::default();
        let s = subnet.unwrap_or(0);
        if self.cfg.subnets.is_empty() {
            return Action::Drop("no_subnet");
        }
        Action::Send(self.reply(msg, MsgType::Nak, Ipv4Addr::UNSPECIFIED, s, &p, sid, None))
    }

    pub(super) fn sid(&self, p: &Params, iface: &Iface) -> Ipv4Addr {
        p.server_id.unwrap_or(iface.addr)
    }
}
