use super::*;

const BASE: &str = r#"
[server]
listen = "10.9.0.1:8080"
next_server = "10.9.0.1"
state_dir = "/nonexistent/state"

[network]
subnet = "10.9.0.0/24"
range = ["10.9.0.100", "10.9.0.199"]
routers = ["10.9.0.1"]

[distros.c7]
kernel = "http://mirror.example/vmlinuz"
initrd = "http://mirror.example/initrd.img"
repo = "http://mirror.example/os"

[profiles.web]
distro = "c7"

[[systems]]
name = "a"
mac = "52:54:00:00:00:01"
ip = "10.9.0.11"
profile = "web"

[[systems]]
name = "b"
mac = "52:54:00:00:00:02"
ip = "10.9.0.12"
profile = "web"
"#;

fn check(text: &str) -> Result<Inventory, String> {
    Inventory::parse(Path::new("inv.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn a_minimal_inventory_loads() {
    let inv = check(BASE).unwrap();
    assert_eq!(inv.systems.len(), 2);
    assert_eq!(inv.server.base_url, "http://10.9.0.1:8080");
    assert_eq!(inv.network.netmask, Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(inv.systems[0].mac_file(), "01-52-54-00-00-00-01");
    assert_eq!(
        inv.distros["c7"].kernel_url,
        "http://mirror.example/vmlinuz"
    );
}

#[test]
fn duplicate_mac_names_both_lines() {
    let t = BASE.replace("52:54:00:00:00:02", "52:54:00:00:00:01");
    let e = check(&t).unwrap_err();
    assert!(e.contains("inv.toml:28:7"), "{e}");
    assert!(
        e.contains("already used by system a (inv.toml:22:7)"),
        "{e}"
    );
}

#[test]
fn duplicate_ip_and_name() {
    let t = BASE
        .replace("10.9.0.12", "10.9.0.11")
        .replace("\"b\"", "\"a\"");
    let e = check(&t).unwrap_err();
    assert!(
        e.contains("IP 10.9.0.11 is already used by system a"),
        "{e}"
    );
    assert!(e.contains("system \"a\" is defined twice"), "{e}");
}

#[test]
fn addresses_inside_subnet_and_outside_range() {
    let e = check(&BASE.replace("10.9.0.12", "10.9.1.12")).unwrap_err();
    assert!(e.contains("outside the subnet 10.9.0.0/24"), "{e}");
    let e = check(&BASE.replace("10.9.0.12", "10.9.0.150")).unwrap_err();
    assert!(
        e.contains("inside the dynamic range 10.9.0.100-10.9.0.199"),
        "{e}"
    );
}

#[test]
fn unknown_reference_suggests() {
    let t = BASE.replacen("profile = \"web\"", "profile = \"wev\"", 1);
    let e = check(&t).unwrap_err();
    assert!(
        e.contains("inv.toml:24:11: system a: no profile \"wev\"; did you mean \"web\"?"),
        "{e}"
    );
}

#[test]
fn hostile_values_are_refused_by_kind_with_their_position() {
    let t = format!(
        "{BASE}\n[ha]\nnotify_email = [\"ops@x\", \"x'; touch /tmp/pwned; echo '@h\"]\nbinary_path = \"/usr/sbin/ha; reboot\"\n"
    )
    .replace(
        "[profiles.web]\n",
        "[profiles.web]\nvars = { packages = [\"curl\", \"x\\n%post\"], motd = \"a\\nb\" }\n",
    )
    .replace(
        "name = \"a\"\n",
        "name = \"a\"\nhostname = \"a;b\"\nkernel_args = \"quiet; reboot\"\n",
    );
    let e = check(&t).unwrap_err();
    let line_of = |needle: &str| t.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (needle, col, msg) in [
        (
            "notify_email",
            26,
            "ha.notify_email: \"x'; touch /tmp/pwned; echo '@h\" is not an e-mail address",
        ),
        (
            "binary_path",
            15,
            "ha.binary_path: \"/usr/sbin/ha; reboot\" is not an absolute path",
        ),
        (
            "vars = {",
            21,
            "profile web: vars.packages: \"x\\n%post\" is not a package name",
        ),
        (
            "hostname = ",
            12,
            "system a: hostname: \"a;b\" is not a host name",
        ),
        (
            "kernel_args = ",
            15,
            "system a: kernel_args: kernel arguments \"quiet; reboot\" contain ';'",
        ),
    ] {
        let want = format!("inv.toml:{}:{col}: {msg}", line_of(needle));
        assert!(e.contains(&want), "want {want:?} in\n{e}");
    }
    assert!(
        e.contains("vars.motd") && e.contains("control character"),
        "{e}"
    );
}

#[test]
fn unknown_key_has_position() {
    let t = BASE.replace("[profiles.web]\n", "[profiles.web]\nkickstrat = \"x\"\n");
    let e = check(&t).unwrap_err();
    assert!(e.starts_with("inv.toml:18:1:"), "{e}");
    assert!(e.contains("unknown key `kickstrat`"), "{e}");
}

#[test]
fn bad_mac() {
    let e = check(&BASE.replace("52:54:00:00:00:02", "52:54:00:00:02")).unwrap_err();
    assert!(e.contains("is not six hex pairs"), "{e}");
    assert_eq!(
        normalize_mac("52-54-00-AA-00-01").as_deref(),
        Some("52:54:00:aa:00:01")
    );
}

#[test]
fn cluster_roles_and_checks() {
    let t = format!(
        "{BASE}\n{}",
        r#"
[[clusters]]
name = "web"
vrid = 51
virtual_ips = ["10.9.0.50"]
[[clusters.members]]
system = "a"
priority = 100
[[clusters.members]]
system = "b"
priority = 90
[[clusters.virtual_servers]]
address = "10.9.0.50:80"
real_servers = ["a", "10.9.0.77:8080"]
check = { type = "http_get", path = "/health" }
"#
    );
    let inv = check(&t).unwrap();
    let c = &inv.clusters[0];
    assert_eq!(c.members[0].state, "MASTER");
    assert_eq!(c.members[1].state, "BACKUP");
    assert_eq!(c.virtual_ips, ["10.9.0.50/24"]);
    let vs = &c.virtual_servers[0];
    assert_eq!(
        vs.real_servers[0].address,
        std::net::IpAddr::from(Ipv4Addr::new(10, 9, 0, 11))
    );
    assert_eq!(vs.real_servers[1].port, 8080);
    assert_eq!(vs.check.as_ref().unwrap().kind, "HTTP_GET");
    let same = t.replace("priority = 90", "priority = 100");
    let e = check(&same).unwrap_err();
    assert!(e.contains("two members have priority 100"), "{e}");
    let np = same.replace("vrid = 51", "vrid = 51\nnopreempt = true");
    let inv = check(&np).unwrap();
    assert!(inv.clusters[0].members.iter().all(|m| m.state == "BACKUP"));
    let bad = t.replace("[\"a\", ", "[\"zz\", ");
    assert!(check(&bad)
        .unwrap_err()
        .contains("real server \"zz\" is neither"));
}

#[test]
fn host_ports_with_bracketed_ipv6() {
    use super::split_host_port;
    assert_eq!(split_host_port("10.0.0.1:80"), Some(("10.0.0.1", Some(80))));
    assert_eq!(split_host_port("web1"), Some(("web1", None)));
    assert_eq!(
        split_host_port("[2001:db8::1]:8080"),
        Some(("2001:db8::1", Some(8080)))
    );
    assert_eq!(
        split_host_port("[2001:db8::1]"),
        Some(("2001:db8::1", None))
    );
    assert_eq!(split_host_port("2001:db8::1"), Some(("2001:db8::1", None)));
    assert_eq!(split_host_port("[2001:db8::1]80"), None);
    assert_eq!(split_host_port("[2001:db8::1]:x"), None);
}
