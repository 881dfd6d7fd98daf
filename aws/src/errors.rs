//! AWS errors as an operator can act on them: what failed, and what to fix.
//! Throttling is retried by the SDK (standard retry mode, with backoff) before it
//! reaches here.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Why an AWS call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AwsError {
    /// Still throttled after the SDK's retries.
    #[error("{what}: AWS is throttling the requests (retried); try again in a minute")]
    Throttled {
        /// The call.
        what: String,
    },
    /// An account quota is reached.
    #[error("{what}: an AWS limit is reached ({message}); delete unused MediaLive channels or inputs, or ask AWS for a higher quota")]
    Limit {
        /// The call.
        what: String,
        /// AWS's words.
        message: String,
    },
    /// The credentials may not do this.
    #[error("{what}: permission denied ({message}); give the server's credentials the policy in docs/aws.md")]
    Denied {
        /// The call.
        what: String,
        /// AWS's words.
        message: String,
    },
    /// MediaLive cannot use the role.
    #[error("{what}: MediaLive cannot use its role ({message}); set aws.role_arn to a role MediaLive may assume, with MediaPackage access (docs/aws.md)")]
    Role {
        /// The call.
        what: String,
        /// AWS's words.
        message: String,
    },
    /// The service does not know it (deleted meanwhile).
    #[error("{what}: not found ({message})")]
    NotFound {
        /// The call.
        what: String,
        /// AWS's words.
        message: String,
    },
    /// No answer: network, endpoint or credentials chain.
    #[error("{what}: AWS not reached ({message}); check the network, aws.region and the credentials")]
    Unreachable {
        /// The call.
        what: String,
        /// The cause.
        message: String,
    },
    /// Anything else, with AWS's words.
    #[error("{what}: {message}")]
    Other {
        /// The call.
        what: String,
        /// AWS's words.
        message: String,
    },
}

impl AwsError {
    /// Whether the call failed because the thing is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AwsError::NotFound { .. })
    }

    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, AwsError::Throttled { .. } | AwsError::Unreachable { .. })
    }
}

/// Classifies an SDK error from the call `what`.
pub(crate) fn classify<E, R>(what: &str, e: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let what = what.to_string();
    let service = match &e {
        SdkError::ServiceError(s) => s.err(),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return AwsError::Unreachable { what, message: error_chain(&e) };
        }
        _ => return AwsError::Other { what, message: error_chain(&e) },
    };
    let code = service.code().unwrap_or_default().to_string();
    let message = service.message().unwrap_or(&code).to_string();
    let lower = format!("{code} {message}").to_lowercase();
    if code.contains("Throttl") || code == "TooManyRequestsException" {
        AwsError::Throttled { what }
    } else if code.contains("Limit") || lower.contains("limit exceeded") || lower.contains("quota") {
        AwsError::Limit { what, message }
    } else if code.contains("AccessDenied") || code == "ForbiddenException" || code == "UnrecognizedClientException" {
        AwsError::Denied { what, message }
    } else if lower.contains("role") && (lower.contains("assume") || lower.contains("arn") || lower.contains("passrole")) {
        AwsError::Role { what, message }
    } else if code.contains("NotFound") {
        AwsError::NotFound { what, message }
    } else {
        AwsError::Other { what, message: if code.is_empty() { message } else { format!("{code}: {message}") } }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
