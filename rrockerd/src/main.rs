//! `rrockerd`: parses flags and runs the daemon until SIGTERM or SIGINT; started as the
//! id-map holder, it holds an id map instead (see `image::idmap`).

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args_os().next().is_some_and(|arg0| arg0 == rrockerd::image::idmap::HOLDER_ARGV0) {
        rrockerd::image::idmap::hold();
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let loaded = rrockerd::config_file::load(args.clone());
    let config = match loaded {
        Ok(config) if config.print_config => {
            return match rrockerd::config_file::print(args) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("rrockerd: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(config) => config,
        Err(error) => {
            eprintln!("rrockerd: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(command) = &config.command {
        return match rrockerd::image::import::run_command(command, &config.images_dir) {
            Ok(said) => {
                print!("{}", said.out);
                eprint!("{}", said.err);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("rrockerd: {error}");
                ExitCode::FAILURE
            }
        };
    }
    rrockerd::init_logging(config.log_format);
    rrockerd::steer_oom_killer(config.oom_score_adj);
    // While still single-threaded: a mount namespace of our own, so that the mounts the
    // daemon makes (the idmapped image) never show in the host's and die with it.
    let mounts = if rustix::process::geteuid().is_root() {
        match rrockerd::image::idmap::enter_private_mount_namespace() {
            Ok(()) => rrockerd::Mounts::Private,
            Err(error) => {
                tracing::warn!(%error, "cannot make a private mount namespace; images will be copied");
                rrockerd::Mounts::Host
            }
        }
    } else {
        rrockerd::Mounts::Host
    };
    // Still one process: where task cgroups go, the daemon moved into its own leaf if its
    // cgroup is delegated, so that the spawner and every helper start there.
    let site =
        match rrockerd::cgroup::placement::settle(&config.cgroup_parent, config.cgroup_version) {
            Ok(site) => site,
            Err(error) => {
                eprintln!("rrockerd: {error}");
                return ExitCode::FAILURE;
            }
        };
    // Also while single-threaded and still small: the helper that clones tasks (a clone from
    // the daemon copies page and fd tables that grow with its tasks).
    let spawner = match (!config.no_spawner).then(rrocker_uring::Spawner::fork) {
        Some(Ok(spawner)) => Some(spawner),
        Some(Err(error)) => {
            tracing::warn!(%error, "cannot start the spawner; the engine clones tasks itself");
            None
        }
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rrockerd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rrockerd::run(config, mounts, spawner, site)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rrockerd: {error}");
            ExitCode::FAILURE
        }
    }
}
