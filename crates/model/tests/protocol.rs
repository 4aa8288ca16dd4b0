use banktransfer_model::protocol_model::{Bounds, ProtocolModel};
use stateright::{Checker, Model, report::WriteReporter};

#[test]
fn measure() {
    let v: Vec<u8> = std::env::var("B")
        .unwrap()
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    let model = ProtocolModel {
        bounds: Bounds {
            losses_max: v[0],
            duplicates_max: v[1],
            crashes_max: v[2],
        },
        antifraud_transfer: if v[3] == 1 { Some(0) } else { None },
        ..ProtocolModel::default()
    };
    let c = model
        .checker()
        .spawn_bfs()
        .report(&mut WriteReporter::new(&mut std::io::stdout()));
    println!("{}", c.unique_state_count());
}
