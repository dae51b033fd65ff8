//! Worldline Open Banking models: the Keycloak-style realm token endpoint.

pub mod token;

open_enum! {
    /// A Worldline service scope. The spec names no closed list; these are the ones its
    /// examples use, and any other is kept as sent.
    Scope {
        /// Verification of Payee.
        Vop = "VOP",
        /// Wero.
        Wero = "WERO",
    }
}
