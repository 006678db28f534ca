//! Turns the HTTP stack's nested errors into a [`SendError`] a person can act on.

use std::error::Error as StdError;
use std::io;

use rustls::CertificateError;

use super::outcome::SendError;

/// Where a request was going, for messages: `example.com` and `example.com:443`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The host as written in the URL.
    pub host: String,
    /// `host:port`, the port filled in from the scheme when the URL has none.
    pub address: String,
}

/// Classifies a failed request by walking its error's source chain.
///
/// TLS is checked first: a handshake failure is also a connect error to hyper, but "certificate
/// not valid for host" tells the person far more than "connect error".
pub(crate) fn describe(error: &(dyn StdError + 'static), target: &Target) -> SendError {
    let chain: Vec<&(dyn StdError + 'static)> = chain(error).collect();
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return SendError::Tls(tls_message(tls, target));
    }
    if chain.iter().any(|e| e.to_string() == "dns error") {
        let cause = chain.last().map(|e| e.to_string()).unwrap_or_default();
        return SendError::Connect(format!("could not resolve host {}: {cause}", target.host));
    }
    if let Some(io) = chain
        .iter()
        .rev()
        .find_map(|e| e.downcast_ref::<io::Error>())
    {
        let address = &target.address;
        let message = match io.kind() {
            io::ErrorKind::ConnectionRefused => format!("connection refused by {address}"),
            io::ErrorKind::ConnectionReset => format!("connection reset by {address}"),
            io::ErrorKind::ConnectionAborted => format!("connection aborted by {address}"),
            io::ErrorKind::HostUnreachable => format!("host {address} is unreachable"),
            io::ErrorKind::NetworkUnreachable => format!("network unreachable for {address}"),
            _ if is_connect(error) => format!("cannot connect to {address}: {io}"),
            // Connected, then the exchange broke: not a reachability problem.
            _ => return SendError::Other(format!("request to {address} failed: {io}")),
        };
        return SendError::Connect(message);
    }
    // hyper nests its errors ("canceled" around "incomplete message"): look at every one.
    let hyper_errors = || {
        chain
            .iter()
            .filter_map(|e| e.downcast_ref::<hyper::Error>())
    };
    let address = &target.address;
    if hyper_errors().any(hyper::Error::is_incomplete_message) {
        return SendError::Other(format!("{address} closed the connection before answering"));
    }
    if let Some(e) = hyper_errors().find(|e| e.is_parse() || e.is_parse_status()) {
        return SendError::Other(format!("{address} did not answer in HTTP: {e}"));
    }
    let text = chain_text(&chain);
    if is_connect(error) {
        SendError::Connect(format!("cannot connect to {}: {text}", target.address))
    } else {
        SendError::Other(format!("request to {} failed: {text}", target.address))
    }
}

/// The error and all its sources, outermost first.
///
/// An `io::Error` wrapping another error reports that error's *source* as its own, skipping the
/// wrapped error itself (where rustls's error sits), so the walk steps into `get_ref` instead.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| step_in(*e))
}

/// The next error in the chain: the one an `io::Error` wraps, else the source.
fn step_in<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match error
        .downcast_ref::<io::Error>()
        .and_then(io::Error::get_ref)
    {
        Some(inner) => Some(inner),
        None => error.source(),
    }
}

/// `a: b: c` without the generic wrappers hyper adds ("client error (Connect)").
fn chain_text(chain: &[&(dyn StdError + 'static)]) -> String {
    let mut parts: Vec<String> = chain
        .iter()
        .map(|e| e.to_string())
        .filter(|s| !s.starts_with("client error ("))
        .collect();
    parts.dedup(); // an io::Error shows the same text as the error it wraps
    if parts.is_empty() {
        chain.first().map(|e| e.to_string()).unwrap_or_default()
    } else {
        parts.join(": ")
    }
}

fn is_connect(error: &(dyn StdError + 'static)) -> bool {
    error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect())
}

fn tls_message(error: &rustls::Error, target: &Target) -> String {
    let host = &target.host;
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate not valid for host {host} ({cert})")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("certificate of {host} has expired ({cert})")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("certificate of {host} is not valid yet ({cert})")
            }
            CertificateError::UnknownIssuer => {
                format!("certificate of {host} is not signed by a trusted authority")
            }
            _ => format!("certificate of {host} rejected: {cert}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("{} does not speak TLS: {error}", target.address)
        }
        _ => format!("TLS handshake with {} failed: {error}", target.address),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            host: "example.com".into(),
            address: "example.com:443".into(),
        }
    }

    #[test]
    fn certificate_errors_name_the_host() {
        let wrong_name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, wrong_name);
        let error = describe(&wrapped, &target());
        assert!(matches!(&error, SendError::Tls(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("certificate not valid for host example.com"),
            "{error}"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(
            describe(&expired, &target())
                .to_string()
                .contains("expired")
        );
    }

    #[test]
    fn refused_connections_name_the_address() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            describe(&refused, &target()),
            SendError::Connect("connection refused by example.com:443".into())
        );
    }
}
