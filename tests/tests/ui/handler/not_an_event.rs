use event_runtime::{Context, Envelope, HandlerError, handler};

struct NotAnEvent;

#[handler(group = "billing")]
async fn bill(_event: Envelope<NotAnEvent>, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
