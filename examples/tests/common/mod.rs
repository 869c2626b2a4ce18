//! What the example tests share: their example processes.

use std::process::{Child, Command, Stdio};

/// An example process with its stdout piped, killed when the test ends, failed or not.
pub(crate) struct Example(Option<Child>);

impl Example {
    /// Starts `command`.
    pub(crate) fn start(command: &mut Command) -> Self {
        Example(Some(
            command
                .stdout(Stdio::piped())
                .spawn()
                .expect("the example starts"),
        ))
    }

    /// Waits for it to exit; what it printed, once it exited successfully.
    pub(crate) fn output(mut self) -> String {
        let output = self.0.take().unwrap().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "the example failed:\n{stdout}");
        stdout
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
