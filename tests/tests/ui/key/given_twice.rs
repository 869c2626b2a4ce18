use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "billing", key = self.customer_id)]
struct InvoiceIssued {
    #[event(key)]
    invoice_id: String,
    customer_id: String,
}

fn main() {}
