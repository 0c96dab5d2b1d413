// Preloaded into `nats-backup serve` by a test (node --import): on SIGUSR2, a promise rejects
// that nobody handles, as a bug in any library or in the service would make one.
process.on("SIGUSR2", () => {
  void Promise.reject(new Error("a stray failure the test caused"));
});
