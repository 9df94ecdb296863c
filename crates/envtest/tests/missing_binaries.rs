//! Without control-plane binaries, starting a cluster fails with a message
//! naming the command that builds them (its own test binary: it changes the
//! environment).

#[test]
fn missing_binaries_name_the_command_that_builds_them() {
    let empty = tempfile::tempdir().unwrap();
    // SAFETY: the only test in this binary; no other thread reads the environment.
    unsafe {
        std::env::set_var("ENVTEST_BIN_DIR", empty.path());
        std::env::remove_var("USE_EXISTING_CLUSTER");
    }
    let err = envtest::Cluster::start(envtest::ClusterOptions::default()).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("hack/control-plane.sh"), "{message}");
    for binary in envtest::binaries::REQUIRED {
        assert!(message.contains(binary), "{binary} not named in: {message}");
    }
}
