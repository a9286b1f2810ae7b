//! Every file rendered for the example inventory, pinned by insta snapshots: a template change
//! shows up as a reviewed diff of what machines will receive.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use kickstart::render::{Global, What};

fn site() -> kickstart::render::Site {
    // an empty state directory: netboot exactly as the inventory says
    // and a fixed callback secret, so the tokens in the snapshots are stable
    let state = std::env::temp_dir().join(format!("ks-snap-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let key = state.join(kickstart::token::KEY_FILE);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        std::io::Write::write_all(&mut f, b"00112233445566778899aabbccddeeff\n").unwrap();
    }
    kickstart::load_site(Path::new("../examples/inventory.toml"), Some(&state)).unwrap()
}

#[test]
fn every_rendered_file_of_the_example_inventory() {
    let site = site();
    let mut n = 0;
    for g in Global::ALL {
        insta::assert_snapshot!(
            format!("global-{}", g.name()),
            site.render_global(g).unwrap()
        );
        n += 1;
    }
    for s in &site.inv.systems {
        for what in What::ALL {
            if site.has(s, what) {
                insta::assert_snapshot!(
                    format!("{}-{}", s.name, what.name()),
                    site.render(s, what).unwrap()
                );
                n += 1;
            }
        }
    }
    // 5 global files, 4 per system (6 systems), 3 more for each of the 2 LB nodes
    assert_eq!(n, 5 + 6 * 4 + 2 * 3);
}

#[test]
fn the_example_inventory_passes_its_own_check() {
    let problems = site().check_all();
    assert!(problems.is_empty(), "{problems:#?}");
}
