use std::net::Ipv4Addr;

use super::options::Chunk;
use super::*;

/// A packet with nothing in it (a known client).
struct N;
impl expr::Packet for N {
    fn option(&self, _: u8) -> Option<&[u8]> {
        None
    }
    fn hardware(&self) -> Vec<u8> {
        vec![]
    }
    fn raw(&self) -> &[u8] {
        &[]
    }
    fn known(&self) -> bool {
        true
    }
}

/// A UEFI PXE client (vendor class PXEClient, architecture as given), leased 10.0.0.7 under
/// the host declaration web01.
struct Pxe(Vec<u8>);
impl expr::Packet for Pxe {
    fn option(&self, code: u8) -> Option<&[u8]> {
        match code {
            60 => Some(b"PXEClient:Arch:00007"),
            93 => Some(&self.0),
            _ => None,
        }
    }
    fn hardware(&self) -> Vec<u8> {
        vec![]
    }
    fn raw(&self) -> &[u8] {
        &[]
    }
    fn known(&self) -> bool {
        true
    }
    fn host_decl_name(&self) -> Option<String> {
        Some("web01".into())
    }
    fn leased_address(&self) -> Option<[u8; 4]> {
        Some([10, 0, 0, 7])
    }
}

fn errors(text: &str) -> Vec<String> {
    match parse_str("t.conf", text) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|d| d.to_string()).collect(),
    }
}

fn check_err(text: &str, want: &str) {
    let e = errors(text);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "want an error containing {want:?}, got {e:?}"
    );
}

#[test]
fn the_corpus_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/dhcpd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        // the corpus sits beside the checkout (../shared); CI always has it
        assert!(
            std::env::var("CI").is_err(),
            "corpus missing at {}",
            dir.display()
        );
        eprintln!("SKIP: no corpus at {}", dir.display());
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if let Err(errs) = load(&p) {
            panic!(
                "{}: {:?}",
                p.display(),
                errs.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn pxe_classes_and_conditionals_evaluate() {
    let cfg = parse_str(
        "t.conf",
        r#"option architecture-type code 93 = unsigned integer 16;
        subnet 10.20.0.0 netmask 255.255.255.0 {
          range 10.20.0.100 10.20.0.199;
          class "pxeclients" {
            match if substring (option vendor-class-identifier, 0, 9) = "PXEClient";
            next-server 10.20.0.2;
            if option architecture-type = 00:07 { filename "uefi/shimx64.efi"; }
            elsif option architecture-type = 00:09 { filename "uefi/shimx64.efi"; }
            else { filename "pxelinux/pxelinux.0"; }
          }
        }"#,
    )
    .unwrap();
    let class = &cfg.classes[0];
    assert!(class.cond.as_ref().unwrap().eval(&Pxe(vec![0, 7])));
    for (arch, want) in [
        (vec![0, 7], "uefi/shimx64.efi"),
        (vec![0, 0], "pxelinux/pxelinux.0"),
    ] {
        let mut params = Params::default();
        cfg.eval(&[class.scope], &Pxe(arch), &mut params);
        assert_eq!(params.filename.as_deref(), Some(want));
        assert_eq!(
            params.next_server,
            Some(Addr::Ip(Ipv4Addr::new(10, 20, 0, 2)))
        );
    }
}

#[test]
fn scopes_inherit_and_override() {
    let cfg = parse_str(
        "t.conf",
        "default-lease-time 600; option domain-name \"g\";\n\
         subnet 10.1.0.0 netmask 255.255.0.0 { range 10.1.1.1 10.1.1.9; default-lease-time 300; }\n\
         group { option domain-name \"grp\"; host h { hardware ethernet 0:0:c0:5d:bd:95; fixed-address 10.1.2.3; } }",
    )
    .unwrap();
    let h = &cfg.hosts[0];
    assert_eq!(h.hw, Some([0, 0, 0xc0, 0x5d, 0xbd, 0x95]));
    let mut scopes = cfg.chain(cfg.subnets[0].scope);
    scopes.extend(cfg.chain(h.scope).into_iter().filter(|s| *s != GLOBAL));
    let mut p = Params::default();
    cfg.eval(&scopes, &N, &mut p);
    assert_eq!(p.default_lease, 300);
    assert_eq!(p.options[&15], vec![Chunk::Bytes(b"grp".to_vec())]);
}

#[test]
fn errors_name_file_line_and_column() {
    check_err(
        "subnet 10.1.0.0 netmask 255.255.0.0 {\n  range 10.1.1.1 10.1.1.9\n}\n",
        "t.conf:2:26: missing ';'",
    );
    check_err(
        "subnet 10.1.0.0 netmask 255.255.0.0 {\n  range 10.2.0.1 10.2.0.9;\n}\n",
        "t.conf:2:3: range 10.2.0.1 10.2.0.9 is outside subnet 10.1.0.0/16",
    );
    check_err(
        "subnet 10.1.0.1 netmask 255.255.0.0 { }",
        "t.conf:1:8: 10.1.0.1 is not the network address",
    );
    check_err(
        "defualt-lease-time 60;",
        "did you mean 'default-lease-time'?",
    );
    check_err("option routerz 10.0.0.1;", "did you mean 'routers'?");
    check_err(
        "option routers 10.0.0.300;",
        "t.conf:1:16: option routers: '10.0.0.300'",
    );
    check_err(
        "ddns-update-style sometimes;",
        "t.conf:1:19: 'sometimes' is not a ddns-update-style",
    );
    check_err("subnet 10.1.0.0 netmask 255.255.0.0 {", "a '}' is missing");
    check_err(
        "host h { hardware ethernet 1:2:3; }",
        "not an Ethernet address",
    );
    check_err(
        "subnet 10.1.0.0 netmask 255.255.0.0 { range 10.1.0.5 10.1.0.9; }\nsubnet 10.1.0.0 netmask 255.255.255.0 { }",
        "overlaps",
    );
    check_err(
        "class \"c\" { match option vendor-class-idnetifier; }",
        "did you mean 'vendor-class-identifier'",
    );
    check_err("if 5foo = \"x\" { }", "'5foo' is not a value here");
    check_err(
        "option foo.bar code 200 = text;",
        "option space 'foo' is not declared",
    );
}

#[test]
fn warnings_for_logging_statements() {
    let cfg = parse_str("t.conf", "log-facility local7;\nhost lonely { }").unwrap();
    let w: Vec<String> = cfg.warnings.iter().map(|d| d.to_string()).collect();
    assert!(
        w[0].starts_with("t.conf:1:1: warning: log-facility"),
        "{w:?}"
    );
    assert!(w[1].contains("can never match"), "{w:?}");
}

#[test]
fn every_problem_is_reported_in_line_order_after_recovery() {
    let text = "\
# three independent mistakes: lines 3, 7 and 11
subnet 10.93.1.0 netmask 255.255.255.0 {
  range 10.93.9.10 10.93.9.20;
}
subnet 10.93.2.0 netmask 255.255.255.0 {
  range 10.93.2.10 10.93.2.20;
  option frobnication-level 3;
}
host h1 {
  hardware ethernet 02:93:00:00:00:11;
  default-lease-time ten;
}
subnet 10.9.0.0 netmask 255.255.0.300 { range 10.9.0.1 10.9.0.2; }
}
if option vendor-class-identifier = \"x\" { bogus 1; } else { filename \"a\"; }
max-lease-time abc;
";
    let got: Vec<String> = errors(text)
        .iter()
        .map(|e| e.split(": ").next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        got,
        [
            "t.conf:3:3",
            "t.conf:7:10",
            "t.conf:11:22",
            "t.conf:13:25",
            "t.conf:14:1",
            "t.conf:15:43",
            "t.conf:16:16"
        ]
    );
    // a missing ';' before '}' is one problem, not a cascade
    assert_eq!(
        errors("subnet 10.1.0.0 netmask 255.255.0.0 {\n  range 10.1.1.1 10.1.1.9\n}\n").len(),
        1
    );
}

#[test]
fn ddns_style_bootp_and_dynamic_bootp_ranges_are_understood_without_warnings() {
    let cfg = parse_str(
        "t.conf",
        "ddns-update-style interim;\nallow bootp;\nddns-update-style none;\ndynamic-bootp-lease-length 600;\nsubnet 10.1.0.0 netmask 255.255.0.0 { deny bootp; ddns-update-style standard;\n range 10.1.0.10 10.1.0.20; range dynamic-bootp 10.1.1.1 10.1.1.9; }\n",
    )
    .unwrap();
    let w: Vec<String> = cfg.warnings.iter().map(|d| d.to_string()).collect();
    assert!(w.is_empty(), "{w:?}");
    let r = &cfg.subnets[0].ranges;
    assert_eq!(
        r.iter()
            .map(|r| (r.start.to_string(), r.dynamic_bootp))
            .collect::<Vec<_>>(),
        [
            ("10.1.0.10".to_string(), false),
            ("10.1.1.1".to_string(), true)
        ]
    );
    let mut g = Params::default();
    cfg.eval(&cfg.chain(GLOBAL), &N, &mut g);
    assert_eq!(g.bootp_lease_length, Some(600));
    let style = |scope| {
        let mut p = Params::default();
        cfg.eval(&cfg.chain(scope), &N, &mut p);
        p.ddns_style
    };
    assert_eq!(style(GLOBAL), DdnsStyle::None);
    assert_eq!(style(cfg.subnets[0].scope), DdnsStyle::Standard);
    let p = |scope| {
        let mut p = Params::default();
        cfg.eval(&cfg.chain(scope), &N, &mut p);
        p.bootp
    };
    assert!(p(GLOBAL));
    assert!(!p(cfg.subnets[0].scope));
    check_err(
        "ddns-update-style ad-hoc;",
        "'ad-hoc' is not a ddns-update-style",
    );
}

#[test]
fn set_option_expressions_log_and_on_blocks() {
    let cfg = parse_str(
        "t.conf",
        r#"set vendorclass = option vendor-class-identifier;
        option domain-name "lab";
        option host-name = pick-first-value(option host-name, concat("pxe-", substring(vendorclass, 0, 3)));
        option root-path = concat(config-option domain-name, ":/", host-decl-name);
        option merit-dump = encode-int(extract-int(option pxe-system-type, 16), 32);
        log(info, concat("vc=", vendorclass));
        unset nothing;
        on commit or release {
          log(concat("lease ", binary-to-ascii(10, 8, ".", leased-address), " ", vendorclass));
          execute("/bin/true", leased-address, "x");
        }"#,
    )
    .unwrap();
    let pkt = Pxe(vec![0, 7]);
    let mut p = Params::default();
    cfg.eval(&[GLOBAL], &pkt, &mut p);
    let opt = |c: u8| p.options.get(&c).cloned();
    assert_eq!(opt(12), Some(vec![Chunk::Bytes(b"pxe-PXE".to_vec())]));
    assert_eq!(opt(17), Some(vec![Chunk::Bytes(b"lab:/web01".to_vec())]));
    assert_eq!(opt(14), Some(vec![Chunk::Bytes(vec![0, 0, 0, 7])]));
    assert_eq!(p.vars["vendorclass"], b"PXEClient:Arch:00007");
    assert_eq!(
        p.effects,
        vec![Effect::Log("vc=PXEClient:Arch:00007".into())]
    );
    let body = &p.on[&Event::Release];
    assert!(
        std::sync::Arc::ptr_eq(body, &p.on[&Event::Commit]),
        "one block for both events"
    );
    // as a lease file keeps it (ISC spaces: `log (`), and as it reads back
    let text = "{ log (concat (\"lease \", binary-to-ascii (10, 8, \".\", leased-address), \" \", vendorclass)); execute (\"/bin/true\", leased-address, \"x\"); }";
    assert_eq!(body.text, text);
    let again = super::on_blocks(&cfg.defs, "lease", &format!("on expiry {text}")).unwrap();
    assert!(matches!(&again[..], [(Event::Expiry, b)] if b.text == text && b.body.len() == 2));
    let fx = cfg.run(&body.body, &pkt, p.vars.clone());
    assert_eq!(
        fx,
        vec![
            Effect::Log("lease 10.0.0.7 PXEClient:Arch:00007".into()),
            Effect::Execute(vec!["/bin/true".into(), "\n\0\0\u{7}".into(), "x".into()]),
        ]
    );
}

#[test]
fn option_spaces_subclasses_and_their_errors() {
    let cfg = parse_str(
        "t.conf",
        r#"option space PXE code width 1 length width 1 hash size 3;
        option PXE.discovery-control code 6 = unsigned integer 8;
        vendor-option-space PXE;
        option PXE.discovery-control 3;
        class "macs" { match hardware; }
        subclass "macs" 1:52:54:00:aa:bb:cc;
        subclass "macs" "literal";
        class "per-circuit" { spawn with option agent.circuit-id; }"#,
    )
    .unwrap();
    assert_eq!(cfg.classes[0].subclasses.len(), 2);
    assert_eq!(
        cfg.classes[0].subclasses[0].0,
        vec![1, 0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]
    );
    assert!(cfg.classes[1].spawn.is_some());
    let mut p = Params::default();
    cfg.eval(&[GLOBAL], &N, &mut p);
    assert_eq!(p.vendor_space.as_deref(), Some("PXE"));
    assert_eq!(
        p.sub_options.get(&("PXE".to_string(), 6)),
        Some(&vec![Chunk::Bytes(vec![3])])
    );
    check_err("option space w code width 3;", "only 1, 2 or 4");
    check_err(
        "option x code 200 = encapsulate nope;",
        "'nope' is not declared",
    );
    check_err("vendor-option-space nope;", "'nope' is not declared");
    check_err(
        "option space s; option s.a code 1 = text; if exists s.a { filename \"x\"; }",
        "not carried by any option",
    );
    check_err(
        "class \"c\" { match if known; }\nsubclass \"c\" 1:2:3;",
        "has no 'match EXPRESSION;'",
    );
    check_err("subclass \"none\" 1:2:3;", "no class named");
    check_err("on lease { }", "the events are commit, release and expiry");
    check_err(
        "option domain-name = binary-to-ascii(1, 8, \".\", hardware);",
        "base 1",
    );
}

#[test]
fn ddns_keys_and_zones() {
    let cfg = parse_str(
        "t.conf",
        "key \"k1\" { algorithm HMAC-MD5.SIG-ALG.REG.INT; secret \"c2VjcmV0\"; };\n\
         key k2 { algorithm hmac-sha256; secret c2VjcmV0; }\n\
         zone Example.Test. { primary 10.0.0.2; key k2; }\n\
         zone 1.0.10.in-addr.arpa { primary 10.0.0.3; key \"k1\"; }\n\
         ddns-domainname \"example.test\"; ddns-hostname = concat(\"h-\", \"x\"); update-static-leases on;\n",
    )
    .unwrap();
    assert_eq!(cfg.keys[0].alg, ddns::Alg::HmacMd5);
    assert_eq!(cfg.keys[1].secret, b"secret");
    assert_eq!(cfg.zones[0].name, "example.test.");
    assert_eq!(
        cfg.zones[0].key.as_ref().map(|k| k.name.as_str()),
        Some("k2.")
    );
    assert_eq!(cfg.zones[1].name, "1.0.10.in-addr.arpa.");
    let mut p = Params::default();
    cfg.eval(&[GLOBAL], &N, &mut p);
    assert_eq!(p.ddns_hostname.as_deref(), Some(&b"h-x"[..]));
    assert!(p.update_static);
    check_err(
        "key k { algorithm hmac-sha1; secret \"eA==\"; }",
        "not supported (hmac-md5 or hmac-sha256)",
    );
    check_err("key k { algorithm hmac-md5; }", "needs both");
    check_err(
        "zone z. { primary 10.0.0.1; key nokey; }",
        "no key named nokey",
    );
    check_err("key k { algorithm hmac-md5; secret \"%%\"; }", "not base64");
}

#[test]
fn omapi_warns_naming_the_replacement_and_failover_names_the_shared_store() {
    let cfg = parse_str(
        "t.conf",
        "omapi-port 7911;\nomapi-key omapi_key;\nallow client-updates;\nignore client-updates;\n",
    )
    .unwrap();
    // client-updates is done (the FQDN option, 81), not warned about
    assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0]
        .to_string()
        .contains("dhcpd hosts add|del|list"));
    check_err(
        "failover peer \"dhcp-failover\" {\n  primary;\n  address 10.0.0.1;\n}\nsubnet 10.1.0.0 netmask 255.255.0.0 { pool { failover peer \"dhcp-failover\"; range 10.1.0.5 10.1.0.9; } }\n",
        "PostgreSQL lease store",
    );
    let e = errors("failover peer \"f\" {\n  primary;\n}\nsubnet 10.1.0.0 netmask 255.255.0.0 { pool { failover peer \"f\"; range 10.1.0.5 10.1.0.9; } }\n");
    assert_eq!(
        e.len(),
        2,
        "the block and the pool's reference, nothing else: {e:?}"
    );
}

#[test]
fn dynamic_bootp_lease_cutoff_reads_unix_seconds_infinite_and_the_manuals_date() {
    let cutoff = |v: &str| {
        let cfg = parse_str("t.conf", &format!("dynamic-bootp-lease-cutoff {v};\n")).unwrap();
        let mut g = Params::default();
        cfg.eval(&cfg.chain(GLOBAL), &N, &mut g);
        g.bootp_lease_cutoff
    };
    assert_eq!(cutoff("1900000000"), Some(1_900_000_000));
    assert_eq!(cutoff("infinite"), Some(u64::from(u32::MAX)));
    assert_eq!(cutoff("2 2030/01/01 00:00:00"), Some(1_893_456_000));
    check_err(
        "dynamic-bootp-lease-cutoff 2 2030/13/01 00:00:00;\n",
        "t.conf:1:28: '2 2030/13/01 00:00:00' is not a time",
    );
    check_err(
        "dynamic-bootp-lease-cutoff never;\n",
        "t.conf:1:28: 'never' is not a time",
    );
}

/// Parses `text` on a thread with the 2 MiB stack of a spawned thread (where a reload runs).
fn errors_on_a_small_stack(text: String) -> Vec<String> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || errors(&text))
        .unwrap()
        .join()
        .expect("the parser overflowed or panicked")
}

#[test]
fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
    let deep = 20_000;
    let cases = [
        (
            "group {\n".repeat(deep) + &"}\n".repeat(deep),
            format!("t.conf:{}:7:", MAX_NESTING + 1),
        ),
        (
            format!(
                "class \"c\" {{\n{}{}}}\n",
                "if exists user-class {\n".repeat(deep),
                "}\n".repeat(deep)
            ),
            format!("t.conf:{}:", MAX_NESTING + 1),
        ),
        (
            format!("class \"c\" {{ match if {}known; }}\n", "not ".repeat(deep)),
            "t.conf:1:".to_string(),
        ),
        (
            format!(
                "class \"c\" {{ match if {}known{}; }}\n",
                "(".repeat(deep),
                ")".repeat(deep)
            ),
            "t.conf:1:".to_string(),
        ),
        (
            format!(
                "class \"c\" {{ match if {}option host-name{} = \"a\"; }}\n",
                "substring(".repeat(deep),
                ", 0, 1)".repeat(deep)
            ),
            "t.conf:1:".to_string(),
        ),
    ];
    for (text, at) in cases {
        let e = errors_on_a_small_stack(text);
        assert!(
            e.iter().any(|m| m.starts_with(&at)
                && m.contains(&format!("nested more than {MAX_NESTING} deep"))),
            "want 'nested more than {MAX_NESTING} deep' at {at}, got {:?}",
            &e[..e.len().min(3)]
        );
        assert!(e.len() <= 3, "one mistake, a few errors at most: {e:?}");
    }
    // long flat chains are lists, not deep trees: they parse (and drop) on a small stack
    let chain = 300_000;
    let text = format!(
        "class \"c\" {{ match if known{}; }}\nclass \"d\" {{ match if {}known; }}\nclass \"e\" {{ match if concat(option host-name{}) = \"a\"; }}\n",
        " or known".repeat(chain),
        "known and ".repeat(chain),
        ", \"x\"".repeat(chain)
    );
    assert_eq!(errors_on_a_small_stack(text), Vec::<String>::new());
    // as deep as the limit allows still parses
    let ok = MAX_NESTING;
    let text = "group {\n".repeat(ok) + &"}\n".repeat(ok);
    assert_eq!(errors_on_a_small_stack(text), Vec::<String>::new());
}

#[test]
fn a_missing_semicolon_after_an_option_is_reported_where_it_belongs() {
    check_err(
        "option routers 10.0.0.1\nsubnet 10.0.0.0 netmask 255.255.255.0 {\n}\n",
        "t.conf:1:24: missing ';' after the value of option routers (the next line starts with 'subnet')",
    );
    // the next statement ends in ';' and is taken in as part of the value
    check_err(
        "option routers 10.0.0.1\noption domain-name \"x\";\n",
        "t.conf:1:24: missing ';' after the value of option routers (the next line starts with 'option')",
    );
    // a value goes on to the next line after a comma
    assert_eq!(
        errors("option domain-name-servers 10.0.0.1,\n  10.0.0.2;\n"),
        Vec::<String>::new()
    );
    // on one line, the token that is not a value
    check_err(
        "option routers 10.0.0.1 { }\n",
        "t.conf:1:25: expected ';' after the value of option routers, found '{'",
    );
}

#[test]
fn a_host_name_declared_twice_is_an_error_as_in_isc_dhcpd() {
    check_err(
        "host a {\n  hardware ethernet 02:00:00:00:00:01;\n}\nhost a {\n  hardware ethernet 02:00:00:00:00:02;\n}\n",
        "t.conf:4:1: host a is declared twice (first at t.conf:1:1",
    );
}
