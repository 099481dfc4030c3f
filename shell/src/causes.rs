//! An error's whole story for a person: its message and the message of every cause below
//! it. Several libraries keep the useful part in a source only (tokio-postgres prints
//! `db error` and keeps the server's `database "x" does not exist` in its source), so start-up
//! and admin errors are printed through [`with_causes`].

use std::error::Error;

/// `error`'s message, then each source's, joined with `: `. A source whose message the
/// text already ends with is skipped (wrappers often repeat their source), and line breaks
/// (Postgres' DETAIL and HINT) become `; ` so that the result fits one log line.
pub fn with_causes(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !message.is_empty() && !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text.replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("server said: no such database")]
    struct Server;

    #[derive(Debug, thiserror::Error)]
    #[error("db error")]
    struct Driver(#[source] Server);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect to Postgres: {0}")]
    struct Wrapper(#[source] Driver);

    #[test]
    fn every_cause_is_told_once() {
        assert_eq!(
            with_causes(&Wrapper(Driver(Server))),
            "cannot connect to Postgres: db error: server said: no such database"
        );
    }

    #[test]
    fn an_error_without_a_source_is_its_message() {
        assert_eq!(with_causes(&Server), "server said: no such database");
    }
}
