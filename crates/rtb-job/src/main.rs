use rtb_job::{job, settings, transfer};
use rtb_model::exit::runner as exit;

fn main() {
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
