//! The IAM policies shipped in ami/iam/, built into the binary for `--print-policy`.

const CLIENT: &str = include_str!("../ami/iam/client-policy.json");
const INSTANCE: &str = include_str!("../ami/iam/instance-role-policy.json");
const INSTANCE_TRUST: &str = include_str!("../ami/iam/instance-role-trust.json");

/// The three documents, each under a comment line saying where it goes.
pub fn text() -> String {
    format!(
        "// Client (the user or role that runs run-render). Replace ACCOUNT_ID, INSTANCE_ROLE_NAME,\n\
         // INPUT_BUCKET and OUTPUT_BUCKET; see ami/iam/README.md.\n{CLIENT}\n\
         // Instance role permissions (attach AmazonSSMManagedInstanceCore too).\n{INSTANCE}\n\
         // Instance role trust policy.\n{INSTANCE_TRUST}"
    )
}
