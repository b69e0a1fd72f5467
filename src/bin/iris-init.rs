//! The init: as PID 1 it mounts what the VM needs, supervises, and halts
//! the VM at the end; as any other PID it is a plain supervisor (a child
//! subreaper) that exits 0 after an orderly shutdown.

use iris_init::config::{ArgsOutcome, Config, USAGE};
use iris_init::pid1;
use iris_init::reactor::Reactor;

fn main() {
    iris_init::console::init_from_env();
    let pid1 = std::process::id() == 1;
    let mounted = if pid1 { pid1::early_boot() } else { Vec::new() };
    std::panic::set_hook(Box::new(|info| {
        iris_init::error!("panic: {info}");
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match Config::parse(&args, &|k| std::env::var(k).ok()) {
        Ok(ArgsOutcome::Run(c)) => c,
        Ok(ArgsOutcome::Help) => {
            println!("{USAGE}");
            return;
        }
        Ok(ArgsOutcome::Version) => {
            println!("iris-init {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) if pid1 => pid1::fatal(&format!("bad arguments: {e}"), &mounted),
        Err(e) => {
            eprintln!("iris-init: {e}");
            std::process::exit(2);
        }
    };
    iris_init::info!(
        "iris-init {} starting as {} (socket {})",
        env!("CARGO_PKG_VERSION"),
        if pid1 { "PID 1" } else { "a supervisor" },
        cfg.socket.display()
    );
    let init = match Reactor::new(cfg, pid1) {
        Ok(i) => i,
        Err(e) if pid1 => pid1::fatal(&e, &mounted),
        Err(e) => {
            iris_init::error!("{e}");
            std::process::exit(1);
        }
    };
    let mode = init.run();
    if pid1 {
        pid1::final_halt(mode, &mounted);
    }
    iris_init::info!("all services stopped; exiting");
}
