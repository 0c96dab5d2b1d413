/**
 * Checking a stream's archive as its bytes go by (a backup being stored, a verify reading one):
 * the inspector decodes and reads it in bounded memory, and what it found is held against what
 * the backup says of itself. Used on the bytes already passing, so nothing is read twice.
 */
import { ArchiveError, archiveReader, type ArchiveReader, type ArchiveSummary } from "../archive/mod.ts";
import type { StreamData } from "../protocol/schemas.ts";

/** Archives larger than this are read on a worker thread, beside the job's own work; smaller ones here (a worker costs its start). */
const OffThreadBytes = 16 * 1024 * 1024;

export class ArchiveCheck {
  readonly #inspector: ArchiveReader;
  #failure: ArchiveError | null = null;

  /** `expectedBytes`: about how large the archive is (the stream's bytes), to choose where it is read. */
  constructor(expectedBytes: number) {
    this.#inspector = archiveReader(expectedBytes > OffThreadBytes);
  }

  /** Never throws: the first malformation is kept, and nothing after it is decoded. */
  push(bytes: Uint8Array): void {
    if (this.#failure) return;
    try {
      this.#inspector.push(bytes);
    } catch (err) {
      this.#failure = asArchiveError(err);
    }
  }

  /** The first malformation found so far, if any. */
  get failure(): ArchiveError | null {
    return this.#failure ?? this.#inspector.failed ?? null;
  }

  /** Decoded bytes so far (progress, as the nats CLI shows them). */
  get uncompressedBytes(): number {
    return this.#inspector.uncompressedBytes;
  }

  /** The archive's summary, or what made it unreadable. */
  async finish(): Promise<ArchiveSummary | ArchiveError> {
    if (this.#failure) return this.#failure;
    try {
      return await this.#inspector.finish();
    } catch (err) {
      // A reader that failed outside the archive (its worker lost) is still an archive not checked.
      return err instanceof ArchiveError ? err : new ArchiveError(`the archive could not be read: ${(err as Error).message}`);
    }
  }
}

function asArchiveError(err: unknown): ArchiveError {
  if (err instanceof ArchiveError) return err;
  throw err;
}

const ComparedConfigFields = ["name", "subjects", "retention", "storage", "discard", "max_msgs", "max_bytes", "max_age"] as const;
const ComparedStateFields = ["messages", "first_seq", "last_seq"] as const;

/** backup.json: what the server said of the stream when the snapshot started. */
export interface BackupJson {
  config?: Record<string, unknown>;
  state?: Record<string, unknown>;
}

/**
 * What is wrong with an archive that could be read: errors.txt (servers up to 2.10 report a failed
 * snapshot only there); a v1 archive's stream name or configuration (meta.inf) other than
 * backup.json's; a v2 archive's state (state.json: v2 holds no configuration) other than
 * backup.json's, or other than the messages it holds; another format or size than the backup
 * recorded. Empty when nothing is.
 */
export function archiveProblems(
  summary: ArchiveSummary,
  stream: string,
  backupJson: BackupJson,
  recorded?: Partial<Pick<StreamData, "archive_format" | "uncompressed_bytes">>,
): string[] {
  const problems: string[] = [];
  const differing = (fields: readonly string[], a: Record<string, unknown>, b: Record<string, unknown>) =>
    fields.filter((k) => JSON.stringify(a[k] ?? null) !== JSON.stringify(b[k] ?? null));
  if (summary.errorsTxt !== undefined) problems.push(`the server reported errors while taking the snapshot (errors.txt in the archive): ${summary.errorsTxt.trim()}`);
  if (summary.format === "v1") {
    if (summary.stream === undefined) problems.push("the archive holds no stream configuration (meta.inf)");
    else if (summary.stream !== stream) problems.push(`the archive holds stream ${JSON.stringify(summary.stream)}, not ${JSON.stringify(stream)}`);
    if (backupJson.config && summary.config) {
      const fields = differing(ComparedConfigFields, backupJson.config, summary.config);
      if (fields.length) problems.push(`the archive's stream configuration differs from backup.json in ${fields.join(", ")}`);
    }
  } else if (summary.state) {
    if (typeof summary.state.messages === "number" && summary.messages !== summary.state.messages) {
      problems.push(`the archive holds ${summary.messages} messages, its state.json says ${summary.state.messages}`);
    }
    if (backupJson.state) {
      const fields = differing(ComparedStateFields, backupJson.state, summary.state);
      if (fields.length) problems.push(`the archive's state.json differs from backup.json's state in ${fields.join(", ")}`);
    }
  }
  if (recorded?.archive_format !== undefined && recorded.archive_format !== summary.format) {
    problems.push(`the archive is ${summary.format}, the backup recorded ${recorded.archive_format}`);
  }
  if (recorded?.uncompressed_bytes !== undefined && recorded.uncompressed_bytes !== summary.uncompressedBytes) {
    problems.push(`the archive decodes to ${summary.uncompressedBytes} bytes, the backup recorded ${recorded.uncompressed_bytes}`);
  }
  return problems;
}
