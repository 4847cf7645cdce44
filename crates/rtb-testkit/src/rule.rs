//! Rules: which calls get which fault (the JSON that tests/world/faults.py reads).

use std::time::Duration;

use serde_json::{json, Value};

/// What happens to a call a rule takes.
#[derive(Clone, Debug, PartialEq)]
enum Fault {
    Delay(Duration),
    Stall,
    Error {
        status: u16,
        code: String,
        message: Option<String>,
    },
    Throttle,
    DropResponse,
    DropRequest,
    CorruptBody {
        from: u8,
        to: u8,
    },
    RewriteEtag,
    SetHeader {
        name: String,
        value: String,
    },
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

/// One rule: the calls it matches (action, and optionally service and a path substring), its
/// budget (let `skip` matching calls through, then fault `times` of them, or all), and one
/// fault. The proxy gives each call to the first matching rule with budget left.
///
/// ```
/// use rtb_testkit::Rule;
/// let r = Rule::on("PutObject").service("s3").path_contains("out/b.png").skip(1).times(2).drop_response();
/// assert_eq!(r.to_json()["fault"]["kind"], "drop_response");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    action: String,
    service: Option<String>,
    path_contains: Option<String>,
    skip: u32,
    times: Option<u32>,
    fault: Option<Fault>,
}

impl Rule {
    /// Calls of this action (`"RunInstances"`, `"SendCommand"`, `"PutObject"`...), or `"*"`
    /// for every call. By default the rule takes every matching call.
    pub fn on(action: &str) -> Rule {
        Rule {
            action: action.to_string(),
            service: None,
            path_contains: None,
            skip: 0,
            times: None,
            fault: None,
        }
    }

    /// Only calls to this service (the SigV4 scope's name: `ec2`, `ssm`, `s3`, `iam`...).
    pub fn service(mut self, service: &str) -> Rule {
        self.service = Some(service.to_string());
        self
    }

    /// Only calls whose URL path and query contain this text (an S3 key, for instance).
    pub fn path_contains(mut self, text: &str) -> Rule {
        self.path_contains = Some(text.to_string());
        self
    }

    /// Let the first `n` matching calls through untouched.
    pub fn skip(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }

    /// Fault the next `n` matching calls (after the skipped ones), then let the rest through.
    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }

    /// Hold the call this long, then forward it (other calls keep flowing).
    pub fn delay(self, d: Duration) -> Rule {
        self.fault(Fault::Delay(d))
    }

    /// Never answer: an API that stopped responding (the connection is held open).
    pub fn stall(self) -> Rule {
        self.fault(Fault::Stall)
    }

    /// Answer `status` with error `code` in the service's own error format, without
    /// forwarding (so the call has no effect).
    pub fn error(self, status: u16, code: &str) -> Rule {
        self.fault(Fault::Error {
            status,
            code: code.to_string(),
            message: None,
        })
    }

    /// The message of an [`error`](Rule::error) answer (call after `error`).
    pub fn message(mut self, text: &str) -> Rule {
        match &mut self.fault {
            Some(Fault::Error { message, .. }) => *message = Some(text.to_string()),
            other => panic!("Rule::message applies to .error(..), not to {other:?}"),
        }
        self
    }

    /// The service's own throttling answer (EC2 503 RequestLimitExceeded, SSM 400
    /// ThrottlingException, S3 503 SlowDown, IAM 400 Throttling), without forwarding.
    pub fn throttle(self) -> Rule {
        self.fault(Fault::Throttle)
    }

    /// Forward the call (it takes effect) but cut the connection instead of answering.
    pub fn drop_response(self) -> Rule {
        self.fault(Fault::DropResponse)
    }

    /// Cut the connection without forwarding.
    pub fn drop_request(self) -> Rule {
        self.fault(Fault::DropRequest)
    }

    /// Forward, then replace every byte `from` with `to` in the response body (streamed).
    pub fn corrupt_body(self, from: u8, to: u8) -> Rule {
        self.fault(Fault::CorruptBody { from, to })
    }

    /// Forward, then replace the ETag header and every `<ETag>` of an XML answer with 32 hex
    /// digits that are not the object's MD5 (what S3 answers for SSE-KMS and SSE-C objects).
    pub fn rewrite_etag(self) -> Rule {
        self.fault(Fault::RewriteEtag)
    }

    /// Forward, then set this header on the response.
    pub fn set_header(self, name: &str, value: &str) -> Rule {
        self.fault(Fault::SetHeader {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    /// Answer with exactly this status, headers and body, without forwarding: a stand-in for
    /// what the emulator does not serve (e.g. IMDS `spot/instance-action` with a notice).
    pub fn respond(self, status: u16, headers: &[(&str, &str)], body: &str) -> Rule {
        self.fault(Fault::Respond {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_string(),
        })
    }

    fn fault(mut self, fault: Fault) -> Rule {
        if let Some(old) = &self.fault {
            panic!("Rule::on({:?}) already has a fault ({old:?})", self.action);
        }
        self.fault = Some(fault);
        self
    }

    /// The rule as tests/world/faults.py reads it.
    pub fn to_json(&self) -> Value {
        let fault = match &self.fault {
            None => Value::Null,
            Some(Fault::Delay(d)) => json!({"kind": "delay", "seconds": d.as_secs_f64()}),
            Some(Fault::Stall) => json!({"kind": "stall"}),
            Some(Fault::Error {
                status,
                code,
                message,
            }) => {
                let mut f = json!({"kind": "error", "status": status, "code": code});
                if let Some(m) = message {
                    f["message"] = json!(m);
                }
                f
            }
            Some(Fault::Throttle) => json!({"kind": "throttle"}),
            Some(Fault::DropResponse) => json!({"kind": "drop_response"}),
            Some(Fault::DropRequest) => json!({"kind": "drop_request"}),
            Some(Fault::CorruptBody { from, to }) => {
                json!({"kind": "corrupt_body", "from": from, "to": to})
            }
            Some(Fault::RewriteEtag) => json!({"kind": "rewrite_etag"}),
            Some(Fault::SetHeader { name, value }) => {
                json!({"kind": "set_header", "name": name, "value": value})
            }
            Some(Fault::Respond {
                status,
                headers,
                body,
            }) => {
                let headers: serde_json::Map<String, Value> =
                    headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                json!({"kind": "respond", "status": status, "headers": headers, "body": body})
            }
        };
        let mut rule = json!({
            "action": self.action,
            "skip": self.skip,
            "times": self.times,
            "fault": fault,
        });
        if let Some(s) = &self.service {
            rule["service"] = json!(s);
        }
        if let Some(p) = &self.path_contains {
            rule["path_contains"] = json!(p);
        }
        rule
    }

    pub(crate) fn has_fault(&self) -> bool {
        self.fault.is_some()
    }

    pub(crate) fn action(&self) -> &str {
        &self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_field_the_addon_reads() {
        let r = Rule::on("GetObject")
            .service("s3")
            .path_contains("out/a.png")
            .skip(2)
            .times(1)
            .corrupt_body(254, 253);
        assert_eq!(
            r.to_json(),
            json!({"action": "GetObject", "service": "s3", "path_contains": "out/a.png",
                   "skip": 2, "times": 1,
                   "fault": {"kind": "corrupt_body", "from": 254, "to": 253}})
        );
    }

    #[test]
    fn defaults_take_every_call() {
        let r = Rule::on("*").delay(Duration::from_millis(1500));
        assert_eq!(
            r.to_json(),
            json!({"action": "*", "skip": 0, "times": null,
                   "fault": {"kind": "delay", "seconds": 1.5}})
        );
    }

    #[test]
    fn error_with_message() {
        let r = Rule::on("SendCommand")
            .error(400, "InvalidInstanceId")
            .message("not online");
        assert_eq!(
            r.to_json()["fault"],
            json!({"kind": "error", "status": 400, "code": "InvalidInstanceId", "message": "not online"})
        );
    }

    #[test]
    fn respond_carries_status_headers_and_body() {
        let r = Rule::on("GetMetadata")
            .service("imds")
            .path_contains("spot/instance-action")
            .respond(
                200,
                &[("Content-Type", "text/plain")],
                "{\"action\":\"terminate\"}",
            );
        assert_eq!(
            r.to_json()["fault"],
            json!({"kind": "respond", "status": 200,
                   "headers": {"Content-Type": "text/plain"},
                   "body": "{\"action\":\"terminate\"}"})
        );
    }

    #[test]
    #[should_panic(expected = "already has a fault")]
    fn one_fault_per_rule() {
        let _ = Rule::on("RunInstances").throttle().stall();
    }
}
