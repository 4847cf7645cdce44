use rtb_job::{job, manifest, process, settings, transfer};
use rtb_model::exit::runner as exit;

fn main() {
    // Before anything else: an array child's row of the batch manifest becomes its environment,
    // which the settings below are read from.
    match manifest::apply_from_env() {
        Ok(None) => {}
        Ok(Some(row)) => println!(
            "rtb-job: batch manifest row {} (job {})",
            row.index, row.job_id
        ),
        Err(e) => {
            eprintln!("rtb-job: {e}");
            std::process::exit(exit::BAD_MANIFEST);
        }
    }
    let args = settings::parse_args();
    let code = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("rtb-job: cannot start the async runtime: {e}");
            exit::BAD_SETTINGS
        }
    };
    std::process::exit(code);
}

async fn run(args: settings::Args) -> i32 {
    // Listening from the start: as PID 1 of a container the runner would ignore SIGTERM until
    // it listens, and the bucket check may wait out a slow start for a minute, so `docker
    // stop` or AWS Batch would wait out their timeout and kill it.
    let mut stop = job::listen_for_stops();
    let settings = match args.check(std::time::SystemTime::now()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtb-job: {e}");
            return exit::BAD_SETTINGS;
        }
    };
    let checked = async {
        let s3 = transfer::s3_client().await;
        job::check_buckets(&settings, &s3).await.map(|()| s3)
    };
    let s3 = tokio::select! {
        checked = checked => match checked {
            Ok(s3) => s3,
            Err(e) => {
                eprintln!("rtb-job: {e}");
                return exit::BAD_SETTINGS;
            }
        },
        s = process::stop_requested(&mut stop) => {
            let process::Stop::Signal(n) = s;
            eprintln!("rtb-job: stopped by signal {n} before the job started; nothing to save");
            return exit::SIGNAL_BASE + n;
        }
    };
    job::run(settings, s3, stop).await
}
