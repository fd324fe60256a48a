use segvault_harness::*;
#[test]
fn smoke() {
    let v = std::env::var("V").unwrap_or("3.9.2".into());
    let c = Cluster::start(ClusterSpec::combined(&v)).unwrap();
    let w = workload::standard(60, 1_700_000_000_000);
    let run = w.run(&c.client(), 1).unwrap();
    run.check(&c.client()).unwrap();
    println!("{:?}", run.committed);
}
