//! `stop JOB`: stop it as the first Ctrl-C does (the runner saves its outputs), then terminate
//! its instance and confirm. A second Ctrl-C terminates at once.

use crate::cli::StopArgs;
use crate::engine::ec2::instance::Instance;
use crate::lifecycle::follow::JobRef;
use crate::lifecycle::Leave;
use crate::patience;
use crate::report::{exit, InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;
use crate::ui::Ui;

pub fn main(args: StopArgs) -> i32 {
    super::block_on(async move {
        let ui = Ui::new(args.json);
        let (cloud, registry, found) =
            match super::attach::located(&args.job, &args.output, &args.aws).await {
                Ok(x) => x,
                Err(code) => return code,
            };
        // Already over (a --keep instance, or a detached job's last half-minute): nothing to
        // stop; end the instance.
        let result = match &found.records {
            Some(r) => cloud.job_result(r).await.ok().flatten(),
            None => None,
        };
        if let (Some(result), Some(tagged)) = (result, &found.instance) {
            ui.note(format!(
                "job {} has already ended (exit code {}); terminating {}",
                found.job_id, result.exit_code, tagged.id
            ));
            let job = JobRef {
                job_id: found.job_id.clone(),
                container: true,
                records: found.records.clone(),
                deadline: found.deadline(),
                timeout: None,
                keep: false,
                api_patience: patience::DEFAULT,
            };
            let mut r = Report {
                job_id: found.job_id.clone(),
                outcome: if result.exit_code == 0 {
                    Outcome::Succeeded
                } else {
                    Outcome::JobFailed
                },
                exit_code: result.exit_code,
                instance_id: Some(tagged.id.clone()),
                instance: InstanceFate::NotLaunched,
                ami: String::new(),
                instance_type: tagged.instance_type.clone(),
                region: cloud.region().map(str::to_string),
                output: None,
                records: found.records.as_ref().map(|r| r.root().to_string()),
                phases: Phases::default(),
                log_lines: 0,
                error: result.error.clone(),
                result: Some(result),
                kept: false,
            };
            let interrupts = Interrupts::listen();
            let instance = Instance::adopt(&cloud, tagged.id.clone());
            crate::termination::end(
                &job,
                &cloud,
                &ui,
                &interrupts,
                instance,
                Leave::Normally,
                &mut r,
            )
            .await;
            // Stopping an ended job succeeded when its instance is gone.
            if r.instance == InstanceFate::Terminated {
                r.exit_code = 0;
            }
            return super::attach::print(&ui, &r, args.json);
        }
        let interrupts = Interrupts::listen_from(1);
        let report = super::attach::take_over(&cloud, &registry, &found, &ui, &interrupts).await;
        let code = super::attach::print(&ui, &report, args.json);
        // The stop did what it was asked: the job stopped, and its instance is gone.
        match (report.outcome, report.instance) {
            (Outcome::Interrupted, InstanceFate::Terminated) => 0,
            _ if code == exit::INTERRUPTED => 0,
            _ => code,
        }
    })
}
