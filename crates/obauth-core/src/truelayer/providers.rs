//! `GET /api/providers`: the provider list, with the spec's filters.

use http::Method;
use obauth_types::truelayer::providers::{Provider, ProvidersQuery, ProvidersResponse};

use super::TrueLayerConfig;
use crate::error::Error;
use crate::operation::{Operation, Replay, RequestContext};
use crate::url::BaseUrl;
use crate::wire;

impl TrueLayerConfig {
    /// Lists providers matching `query` (an empty query lists them all). Needs no secret.
    pub fn providers(&self, query: ProvidersQuery) -> ListProviders<'_> {
        ListProviders {
            config: self,
            query,
        }
    }
}

/// `GET /api/providers?clientId=…&scopes=…&country=…`.
///
/// `scopes` and `country` are OpenAPI `spaceDelimited` arrays: one parameter, values joined
/// by `%20`. Absent or empty filters are not sent.
#[derive(Debug)]
pub struct ListProviders<'a> {
    config: &'a TrueLayerConfig,
    query: ProvidersQuery,
}

impl ListProviders<'_> {
    fn query_string(&self) -> String {
        let mut query = String::new();
        if let Some(client_id) = self.query.client_id.as_deref().filter(|id| !id.is_empty()) {
            wire::push_query(&mut query, "clientId", client_id);
        }
        if !self.query.scopes.is_empty() {
            wire::push_query(&mut query, "scopes", &self.query.scopes.to_wire());
        }
        if !self.query.countries.is_empty() {
            let countries: Vec<&str> = self.query.countries.iter().map(|c| c.as_str()).collect();
            wire::push_query(&mut query, "country", &countries.join(" "));
        }
        query
    }
}

impl Operation for ListProviders<'_> {
    type Output = Vec<Provider>;
    const NAME: &'static str = "truelayer.providers.list";

    fn replay(&self) -> Replay {
        Replay::Safe
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        let uri = BaseUrl::with_query(&self.config.endpoints.providers, &self.query_string())?;
        Ok(wire::request(
            Method::GET,
            uri,
            &self.config.user_agent,
            None,
            Vec::new(),
        ))
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<Vec<Provider>, Error> {
        wire::parse_json::<ProvidersResponse, B>(response).map(|list| list.0)
    }
}
