use run_render::cli::{self, Cmd};
use run_render::cmd;

fn main() {
    let code = match cli::parse() {
        Cmd::Run(args) => cmd::run::main(args),
        Cmd::Batch(args) => cmd::batch::main(args),
        Cmd::AwsBatch(c) => cmd::aws_batch::main(c),
        Cmd::Status(args) => cmd::status::main(args),
        Cmd::Logs(args) => cmd::logs::main(args),
        Cmd::Stop(args) => cmd::stop::main(args),
        Cmd::Attach(args) => cmd::attach::main(args),
        Cmd::List(args) => cmd::list::main(args),
        Cmd::Cleanup(args) => cmd::cleanup::main(args),
        Cmd::Cost(args) => cmd::cost::main(args),
        Cmd::Report(args) => cmd::report::main(args),
        Cmd::Policy => {
            cmd::emit(&run_render::policies::text());
            0
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cli::Cli::command(), "run-render", &mut out);
            cmd::emit(&String::from_utf8_lossy(&out));
            0
        }
    };
    std::process::exit(code);
}
