//! anysio's load generator: one thread, one mio poller, thousands of Socket.IO clients.
//!
//! ```text
//! loadgen connect --port P --clients 1000 [--window 256] [--sources 1] [--source-offset 0] [--rss-at 10000]
//!                 [--hold 0] [--wait-stdin]
//! loadgen echo    --port P --clients 100 --depth 8 [--duration 5] [--warmup 1] [--payload 100]
//! loadgen bcast   --port P [--port2 P2] --clients 1000 [--window 16] [--duration 5] [--warmup 1] [--payload 100]
//!                 (--port2: the clients alternate between two servers of one cluster)
//! loadgen poll    --port P --clients 50 [--duration 5] [--warmup 1] [--payload 100]
//! loadgen reflect [--port P, else $PORT] [--timeout 120]   (a minimal native server, for calibration)
//! ```
//! `--parser msgpack` makes the WebSocket clients (connect, echo, bcast) speak socket.io-msgpack-parser.
//! Every run is bounded by `--timeout` seconds (and the measured part by `--duration`). With `--server-pid`, the
//! server's CPU use and RSS are read from /proc around the measured window. The result is one JSON object on
//! stdout; it includes this process's own CPU use (`loadgen_cpu`, fraction of one core) so a reader can tell
//! whether the load generator or the server was the bottleneck.
mod msgpack;
mod payload;
mod polling;
mod reflect;
mod scenarios;
mod stats;
mod tcp;
mod ws;

use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Args {
    pub scenario: String,
    pub host: String,
    pub port: u16,
    /// bcast: a second server of the same cluster; clients alternate between the two ports.
    pub port2: Option<u16>,
    pub clients: usize,
    pub depth: usize,
    pub window: usize,
    pub sources: usize,
    pub source_offset: usize,
    pub wait_stdin: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub hold: Duration,
    pub settle: Duration,
    pub timeout: Duration,
    pub handshake_timeout: Duration,
    pub payload: usize,
    pub max_failures: u64,
    pub rss_at: Vec<usize>,
    pub server_pid: Option<String>,
    /// socket.io-msgpack-parser instead of the default text packets (WebSocket scenarios).
    pub msgpack: bool,
    /// WebSocket clients offer permessage-deflate and, when the server accepts, compress every message.
    pub deflate: bool,
}

const USAGE: &str = "usage: loadgen connect|echo|bcast|poll|reflect --port P [--host 127.0.0.1] [--clients N] \
[--port2 P (bcast: clients alternate between two servers)] [--depth N] [--window N] [--sources N] [--source-offset N] [--wait-stdin] [--duration S] [--warmup S] [--hold S] [--settle S] [--timeout S] \
[--handshake-timeout S] [--payload BYTES] [--max-failures N] [--rss-at N,N] [--server-pid PID] [--parser default|msgpack] [--deflate]";

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let scenario = argv.next().ok_or("missing scenario")?;
    let defaults = match scenario.as_str() {
        "connect" => (1000, 1, 256),
        "echo" => (100, 8, 100),
        "bcast" => (1000, 1, 16),
        "poll" => (50, 1, 50),
        "reflect" => (0, 1, 1),
        other => return Err(format!("unknown scenario {other:?}")),
    };
    let mut a = Args {
        scenario,
        host: "127.0.0.1".into(),
        port: 0,
        port2: None,
        clients: defaults.0,
        depth: defaults.1,
        window: defaults.2,
        sources: 1,
        source_offset: 0,
        wait_stdin: false,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        hold: Duration::ZERO,
        settle: Duration::from_millis(500),
        timeout: Duration::from_secs(120),
        handshake_timeout: Duration::from_secs(10),
        payload: 100,
        max_failures: 256,
        rss_at: Vec::new(),
        server_pid: None,
        msgpack: false,
        deflate: false,
    };
    while let Some(flag) = argv.next() {
        if flag == "--wait-stdin" {
            a.wait_stdin = true;
            continue;
        }
        if flag == "--deflate" {
            a.deflate = true;
            continue;
        }
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a count: {value}"))
        };
        let secs = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or(format!("{flag}: not a number of seconds: {value}"))
        };
        match flag.as_str() {
            "--host" => a.host = value.clone(),
            "--port" => a.port = value.parse().map_err(|_| format!("bad port {value}"))?,
            "--port2" => a.port2 = Some(value.parse().map_err(|_| format!("bad port {value}"))?),
            "--clients" => a.clients = num()?,
            "--depth" => a.depth = num()?.max(1),
            "--window" => a.window = num()?.max(1),
            "--sources" => a.sources = num()?.clamp(1, 254),
            "--source-offset" => a.source_offset = num()?.min(253),
            "--duration" => a.duration = secs()?,
            "--warmup" => a.warmup = secs()?,
            "--hold" => a.hold = secs()?,
            "--settle" => a.settle = secs()?,
            "--timeout" => a.timeout = secs()?,
            "--handshake-timeout" => a.handshake_timeout = secs()?,
            "--payload" => a.payload = num()?.min(1 << 20),
            "--max-failures" => a.max_failures = num()? as u64,
            "--rss-at" => {
                a.rss_at = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| format!("--rss-at: bad count {s}")))
                    .collect::<Result<_, _>>()?;
                a.rss_at.sort_unstable();
            }
            "--server-pid" => a.server_pid = Some(value.clone()),
            "--parser" => {
                a.msgpack = match value.as_str() {
                    "default" => false,
                    "msgpack" => true,
                    _ => return Err(format!("--parser: default or msgpack, not {value}")),
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.port == 0 && a.scenario == "reflect" {
        a.port = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
    }
    if a.port == 0 {
        return Err("--port is required".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let mut argv = std::env::args();
    argv.next(); // the program's own name
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr = match tcp::loopback(&args.host, args.port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.scenario.as_str() {
        "connect" => scenarios::connect(&args, addr),
        "echo" => scenarios::echo(&args, addr),
        "bcast" => scenarios::bcast(&args, addr),
        "reflect" => reflect::serve(&args, addr),
        _ => polling::echo(&args, addr),
    };
    match result {
        Ok(mut report) => {
            report["scenario"] = args.scenario.clone().into();
            report["clients"] = args.clients.into();
            let ok = report["ok"].as_bool().unwrap_or(false);
            println!("{report}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"scenario": args.scenario, "ok": false, "error": e.to_string()})
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn scenario_defaults_and_flags() {
        let a = args("echo --port 5000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.clients, a.depth), (100, 8));
        let a = args("connect --port 1 --clients 20000 --sources 4 --rss-at 10000,5000 --hold 2.5")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.rss_at, vec![5000, 10000]);
        assert_eq!(a.hold, Duration::from_millis(2500));
        assert_eq!(a.sources, 4);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(args("echo").is_err());
        assert!(args("fly --port 1").is_err());
        assert!(args("echo --port 1 --duration -3").is_err());
        assert!(args("echo --port 1 --clients").is_err());
    }
}
