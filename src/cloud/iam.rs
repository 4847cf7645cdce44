//! IAM: the instance profile must exist before we launch with it.

use super::{cloud_error, Cloud, CloudError};

impl Cloud {
    /// Whether the instance profile (a name, or an ARN whose last segment is the name) exists.
    pub async fn instance_profile_exists(&self, name_or_arn: &str) -> Result<bool, CloudError> {
        let name = name_or_arn.rsplit('/').next().unwrap_or(name_or_arn);
        match self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = cloud_error("IAM GetInstanceProfile", e);
                if e.is("NoSuchEntity") {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}
