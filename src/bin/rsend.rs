//! rsend: submit a message on stdin over SMTP (msmtp/sendmail drop-in). All logic is in the library.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(postie::cli::rsend::main());
}
