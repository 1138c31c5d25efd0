//! Fuzz target for the config loader (`trawl::config::load_str`): Prometheus' YAML and the
//! OpenTelemetry Collector dialect. Asserts:
//! - any text: an error or a config, never a panic;
//! - a config that loads, dumped with `config::dump::to_yaml` (what `/api/v1/status/config`
//!   serves), loads again to the same jobs, in the same order.
//!
//! The first byte picks the input: the text as is, or one of the shipped examples with the
//! text spliced in, so short runs reach deep into both dialects.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use trawl::config::{dump, load_str};

const EXAMPLES: [&str; 4] = [
    include_str!("../../examples/quickstart.yml"),
    include_str!("../../examples/remote-write.yml"),
    include_str!("../../examples/managed-backends.yml"),
    include_str!("../../examples/otel-collector-values.yaml"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let fuzz = String::from_utf8_lossy(rest);
    let text = match selector as usize % (EXAMPLES.len() + 1) {
        0 => fuzz.into_owned(),
        i => {
            let example = EXAMPLES[i - 1];
            // Splice at a char boundary picked by the second byte.
            let at = rest.first().map_or(0, |&b| example.len() * b as usize / 256);
            let at = (0..=at).rev().find(|&i| example.is_char_boundary(i)).unwrap_or(0);
            format!("{}{}{}", &example[..at], fuzz, &example[at..])
        }
    };
    // A directory that does not exist: relative file paths in the config resolve under it.
    let path = Path::new("/nonexistent-fuzz/trawl.yml");
    let Ok(cfg) = load_str(&text, path) else { return };
    let dumped = dump::to_yaml(&cfg);
    let again = match load_str(&dumped, path) {
        Ok(c) => c,
        Err(e) => panic!("a loaded config's dump does not load: {e}\n--- dump:\n{dumped}"),
    };
    let jobs =
        |c: &trawl::config::Config| c.scrape_configs.iter().map(|s| s.job().to_owned()).collect::<Vec<_>>();
    assert_eq!(jobs(&again), jobs(&cfg), "the dump changed the jobs\n--- dump:\n{dumped}");
});
