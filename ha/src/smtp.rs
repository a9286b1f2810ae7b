//! A small SMTP client for keepalived's alerts: HELO, MAIL FROM, RCPT TO each, DATA.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn expect(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    want: char,
) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            anyhow::bail!("the server closed the connection");
        }
        // multi-line replies continue with "NNN-"
        if line.len() >= 4 && line.as_bytes()[3] == b'-' {
            continue;
        }
        if !line.starts_with(want) {
            anyhow::bail!("unexpected reply: {}", line.trim_end());
        }
        return Ok(());
    }
}

/// Sends one message; the whole exchange is bounded by `timeout`.
pub async fn send(
    host: &str,
    port: u16,
    helo: &str,
    from: &str,
    to: &[String],
    subject: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    tokio::time::timeout(timeout, async {
        let s = TcpStream::connect((host, port)).await?;
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        expect(&mut r, '2').await?;
        w.write_all(format!("HELO {helo}\r\n").as_bytes()).await?;
        expect(&mut r, '2').await?;
        w.write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes()).await?;
        expect(&mut r, '2').await?;
        for t in to {
            w.write_all(format!("RCPT TO:<{t}>\r\n").as_bytes()).await?;
            expect(&mut r, '2').await?;
        }
        w.write_all(b"DATA\r\n").await?;
        expect(&mut r, '3').await?;
        let date = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let msg = format!(
            "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nX-Mailer: ha (opsflow)\r\nX-Unix-Time: {date}\r\n\r\n{subject}\r\n.\r\n",
            to.join(", ")
        );
        w.write_all(msg.as_bytes()).await?;
        expect(&mut r, '2').await?;
        w.write_all(b"QUIT\r\n").await?;
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {timeout:?}"))?
}
