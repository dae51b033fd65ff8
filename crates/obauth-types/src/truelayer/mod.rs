//! TrueLayer Authentication Server models, one module per API area as the spec tags them.

pub mod auth_link;
pub mod debug;
pub mod providers;
pub mod token;

use serde::{Deserialize, Serialize};

open_enum! {
    /// A TrueLayer scope: the Data API scopes, and the Payments and Verification API scopes
    /// that `client_credentials` asks for.
    Scope {
        /// `info`: identity information.
        Info = "info",
        /// `accounts`.
        Accounts = "accounts",
        /// `balance`.
        Balance = "balance",
        /// `transactions`.
        Transactions = "transactions",
        /// `standing_orders`.
        StandingOrders = "standing_orders",
        /// `direct_debits`.
        DirectDebits = "direct_debits",
        /// `cards`.
        Cards = "cards",
        /// `offline_access`: also issue a refresh token.
        OfflineAccess = "offline_access",
        /// `openid` (hosted auth dialog).
        OpenId = "openid",
        /// `payments` (Payments API v3).
        Payments = "payments",
        /// `recurring_payments:sweeping`.
        RecurringPaymentsSweeping = "recurring_payments:sweeping",
        /// `recurring_payments:commercial`.
        RecurringPaymentsCommercial = "recurring_payments:commercial",
        /// `signupplus`.
        SignupPlus = "signupplus",
        /// `verification` (Verification API).
        Verification = "verification",
        /// `payouts` (deprecated payments API).
        Payouts = "payouts",
        /// `paydirect` (deprecated payments API).
        PayDirect = "paydirect",
    }
}

open_enum! {
    /// A provider country, as the providers API names it (lower-case ISO 3166 alpha-2,
    /// with `uk` for the United Kingdom).
    Country {
        /// Austria.
        At = "at",
        /// Belgium.
        Be = "be",
        /// Germany.
        De = "de",
        /// Spain.
        Es = "es",
        /// Finland.
        Fi = "fi",
        /// France.
        Fr = "fr",
        /// Ireland.
        Ie = "ie",
        /// Italy.
        It = "it",
        /// Lithuania.
        Lt = "lt",
        /// Netherlands.
        Nl = "nl",
        /// Poland.
        Pl = "pl",
        /// Portugal.
        Pt = "pt",
        /// Sweden.
        Se = "se",
        /// United Kingdom.
        Uk = "uk",
    }
}

/// `response_type`, which these endpoints fix to `code`. A unit type, so a request
/// can hold no other value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResponseTypeCode;

impl Serialize for ResponseTypeCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("code")
    }
}

impl<'de> Deserialize<'de> for ResponseTypeCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        if value == "code" {
            Ok(ResponseTypeCode)
        } else {
            Err(serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&value),
                &"\"code\"",
            ))
        }
    }
}

/// PKCE `code_challenge_method`: the spec allows only `S256`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CodeChallengeMethod {
    /// SHA-256 (RFC 7636 §4.2).
    #[default]
    S256,
}

/// `response_mode`: the spec allows only `form_post`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// The authorization response is POSTed to the redirect URI as a form.
    FormPost,
}
