/**
 * `watch [ID]`: status events as they come, one line each. With an id, that job's until its
 * terminal event (exit status as the job ended); without, every job's until Ctrl-C.
 */
import type { Command } from "commander";
import type { JobRecord } from "../protocol/schemas.ts";
import { Subjects } from "../protocol/subjects.ts";
import { CliError } from "./ask.ts";
import { connectFor } from "./client-connection.ts";
import { followJob } from "./follow-job.ts";
import { eventLine, jobTitle } from "./job-view.ts";

export function addWatchCommand(program: Command): void {
  program
    .command("watch")
    .description("print jobs' status events as they come: one job's until it ends, or every job's until Ctrl-C")
    .argument("[id]", "the job to follow")
    .option("--json", "print each event's job record as one line of JSON")
    .action(async (id: string | undefined, o: { json?: boolean }, cmd: Command) => {
      const nc = await connectFor(cmd);
      const print = (r: JobRecord) => process.stdout.write(`${o.json ? JSON.stringify(r) : eventLine(r)}\n`);
      const stop = new AbortController();
      const onSigint = () => stop.abort();
      process.once("SIGINT", onSigint);
      try {
        if (id) {
          const record = await followJob(nc, id, print, { signal: stop.signal }).catch((err: unknown) => {
            if (stop.signal.aborted) return null;
            throw err;
          });
          if (record && record.state !== "completed") {
            throw new CliError(`${jobTitle(record)} job ${record.id} ended ${record.state}${record.error ? `: ${record.error.description}` : ""}`, 1, record.error?.code);
          }
          return;
        }
        const sub = nc.subscribe(Subjects.statusAll);
        stop.signal.addEventListener("abort", () => sub.unsubscribe(), { once: true });
        // Said once the server has the subscription: every event from then on is printed.
        await nc.flush();
        process.stderr.write(`watching ${Subjects.statusAll} (Ctrl-C to stop)\n`);
        for await (const m of sub) {
          try {
            print(m.json<JobRecord>());
          } catch {
            // Not a job record: not the service's.
          }
        }
      } finally {
        process.removeListener("SIGINT", onSigint);
        await nc.close();
      }
    });
}
