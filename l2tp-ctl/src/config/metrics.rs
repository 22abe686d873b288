//! `[metrics]`: the Prometheus endpoint (issue 16). Nothing is exposed
//! unless `listen` is set.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of `GET /metrics` (for example `127.0.0.1:9561`); none by
    /// default.
    pub listen: Option<SocketAddr>,
    /// Series per session as well as per tunnel (65,536 sessions x 10
    /// series: a cardinality to opt into).
    pub per_session: bool,
}
