//! Property tests of usernames, which the admin API and the sign-in form both read: the
//! rules never panic and always give the same answer, and the normalized key of an
//! accepted username is itself an accepted username with the same key, so a user who
//! types the normalized form signs in to the same account.

use proptest::prelude::*;

use super::*;
use crate::fuzz::{config, nasty_string};

fn accepted(name: &str) -> bool {
    let mut c = Collector::default();
    check_username(&mut c, "username", name);
    c.finish().is_ok()
}

/// Names with case, width, script and spacing variety.
fn name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "alice",
            "Bob",
            "ＡＬＩＣＥ",
            "ß",
            "ẞ",
            "İ",
            "ı",
            "σ",
            "Σ",
            "ς",
            "é",
            "e\u{301}",
            "ǅ",
            "ﬁ",
            "Å",
            "\u{212b}",
            "K",
            "\u{212a}",
            "ｂｏｂ",
            "хана",
            "ハナ",
            "李",
            "٣",
            "3",
            "_",
            ".",
            "-",
            "@",
            " ",
            "  ",
            "\u{a0}",
            "\u{200d}",
            "\u{301}",
        ])
        .prop_map(str::to_owned),
        nasty_string(),
    ];
    prop::collection::vec(piece, 1..5).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn the_key_of_an_accepted_name_is_stable(name in name()) {
        let ok = accepted(&name);
        prop_assert_eq!(ok, accepted(&name));
        let key = username_key(&name);
        prop_assert_eq!(&key, &username_key(&name));
        if ok {
            prop_assert!(accepted(&key), "{name:?} is accepted, its key {key:?} is not");
            prop_assert_eq!(username_key(&key), key.clone(), "{:?}", name);
        }
    }
}
