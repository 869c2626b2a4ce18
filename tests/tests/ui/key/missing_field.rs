use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "billing", key = self.cutomer_id)]
struct InvoiceIssued {
    customer_id: String,
    amount_cents: u64,
}

fn main() {}
