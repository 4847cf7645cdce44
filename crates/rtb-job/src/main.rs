use rtb_job::{job, manifest, settings, transfer};
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
    let settings = match args.check(std::time::SystemTime::now()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtb-job: {e}");
            return exit::BAD_SETTINGS;
        }
    };
    let s3 = transfer::s3_client().await;
    if let Err(e) = job::check_buckets(&settings, &s3).await {
        eprintln!("rtb-job: {e}");
        return exit::BAD_SETTINGS;
    }
    job::run(settings, s3).await
}
