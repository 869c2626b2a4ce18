use event_runtime::DomainEvent;

#[derive(DomainEvent)]
#[event(context = "sensors")]
union Reading {
    celsius: f32,
    raw: u32,
}

fn main() {}
