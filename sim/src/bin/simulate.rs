//! Replays simulated days against the engine and against the fixed 9-minute baseline.
//!
//! ```text
//! cargo run --release -p speech-token-sim --bin simulate -- --hours 24 --seed 1 [--seeds 20] [--json]
//!     [--worst-case-throttling]   # every hidden timer waits for a whole minute
//!     [--engine chromium|chromium-measured|firefox|webkit]   # hidden-timer model (docs/BROWSERS.md)
//! ```
//!
//! Prints, per policy: broker requests (per day and per token lifetime), milliseconds any
//! consumer held an expired token (post-wake catch-up counted apart), expired tokens handed to
//! callers, and the worst lateness of a refresh. `--json` prints one JSON object for `make bench`.

fn main() {
    native::main();
}

mod native {
    use speech_token_client::engine::RefreshPolicy;
    use speech_token_sim::{run_engine, run_fixed_interval, Report, Scenario, Throttling};

    pub fn main() {
        let mut hours = 24.0;
        let mut seed = 1u64;
        let mut seeds = 1u64;
        let mut json = false;
        let mut worst_case = false;
        let mut throttling = Throttling::CHROMIUM;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .unwrap_or_else(|| fail(&format!("{name} needs a value")))
            };
            match arg.as_str() {
                "--hours" => {
                    hours = value("--hours")
                        .parse()
                        .unwrap_or_else(|_| fail("--hours: a number"))
                }
                "--seed" => {
                    seed = value("--seed")
                        .parse()
                        .unwrap_or_else(|_| fail("--seed: an integer"))
                }
                "--seeds" => {
                    seeds = value("--seeds")
                        .parse()
                        .unwrap_or_else(|_| fail("--seeds: an integer"))
                }
                "--json" => json = true,
                "--worst-case-throttling" => worst_case = true,
                "--engine" => {
                    let name = value("--engine");
                    throttling = Throttling::ALL
                        .into_iter()
                        .find(|t| t.engine == name)
                        .unwrap_or_else(|| {
                            fail("--engine: chromium, chromium-measured, firefox or webkit")
                        });
                }
                "-h" | "--help" => {
                    println!("usage: simulate [--hours H] [--seed N] [--seeds COUNT] [--json] [--worst-case-throttling] [--engine NAME]");
                    return;
                }
                other => fail(&format!("unknown argument {other}")),
            }
        }
        let mut engine = Vec::new();
        let mut baseline = Vec::new();
        for s in seed..seed + seeds {
            let mut scenario = Scenario::day(s, hours);
            scenario.worst_case_throttling = worst_case;
            scenario.throttling = throttling;
            engine.push(run_engine(&scenario, RefreshPolicy::default()));
            baseline.push(run_fixed_interval(&scenario));
        }
        if json {
            println!(
                "{{\"hours\":{hours},\"seeds\":{seeds},\"engine\":{},\"fixedInterval\":{}}}",
                to_json(&engine),
                to_json(&baseline)
            );
            return;
        }
        println!(
            "{seeds} simulated day(s) of {hours} h, seeds {seed}..{}, hidden timers as in {}",
            seed + seeds - 1,
            throttling.engine
        );
        println!(
            "{:<34} {:>9} {:>12} {:>13} {:>12} {:>10} {:>11} {:>12}",
            "policy",
            "requests",
            "req/lifetime",
            "exposure ms",
            "catch-up ms",
            "days exp.",
            "expired out",
            "worst late ms"
        );
        print_row("speech-token-client engine", &engine);
        print_row("fixed 9-min interval, no retry", &baseline);
    }

    fn fail(message: &str) -> ! {
        eprintln!("simulate: {message}");
        std::process::exit(2)
    }

    fn mean(reports: &[Report], f: impl Fn(&Report) -> f64) -> f64 {
        reports.iter().map(f).sum::<f64>() / reports.len().max(1) as f64
    }

    fn print_row(name: &str, reports: &[Report]) {
        println!(
            "{:<34} {:>9.1} {:>12.2} {:>13.0} {:>12.0} {:>10} {:>11} {:>12.0}",
            name,
            mean(reports, |r| r.requests as f64),
            mean(reports, |r| r.requests_per_lifetime),
            mean(reports, |r| r.exposure_ms),
            mean(reports, |r| r.catch_up_ms),
            format!(
                "{}/{}",
                reports.iter().filter(|r| r.exposure_ms > 0.0).count(),
                reports.len()
            ),
            reports.iter().map(|r| r.expired_handed_out).sum::<u64>(),
            reports
                .iter()
                .map(|r| r.worst_lateness_ms)
                .fold(0.0, f64::max),
        );
    }

    fn to_json(reports: &[Report]) -> String {
        format!(
            "{{\"requests\":{:.1},\"requestsPerLifetime\":{:.3},\"exposureMs\":{:.0},\"catchUpMs\":{:.0},\"daysWithExposure\":{},\"expiredHandedOut\":{},\"worstLatenessMs\":{:.0},\"maxInFlight\":{}}}",
            mean(reports, |r| r.requests as f64),
            mean(reports, |r| r.requests_per_lifetime),
            mean(reports, |r| r.exposure_ms),
            mean(reports, |r| r.catch_up_ms),
            reports.iter().filter(|r| r.exposure_ms > 0.0).count(),
            reports.iter().map(|r| r.expired_handed_out).sum::<u64>(),
            reports.iter().map(|r| r.worst_lateness_ms).fold(0.0, f64::max),
            reports.iter().map(|r| r.max_in_flight).max().unwrap_or(0),
        )
    }
}
