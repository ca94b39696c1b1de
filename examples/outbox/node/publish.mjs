// Publish through the Sluice outbox with node-postgres: the event is
// inserted in the same transaction as the change it announces, so both
// commit or neither. Run with DATABASE_URL, TENANT and SCAN set.
import pg from "pg";

const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
const tenant = process.env.TENANT;
const scan = Number(process.env.SCAN);

async function inTransaction(work) {
  await client.query("BEGIN");
  try {
    await work();
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK");
    throw err;
  }
}

function publish(channel, event, data) {
  return client.query(
    "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, $2, $3)",
    [channel, event, JSON.stringify(data)],
  );
}

await inTransaction(async () => {
  // SET LOCAL for row-level security: the tenant this transaction acts for.
  await client.query("SELECT set_config('app.tenant_id', $1, true)", [tenant]);
  await client.query("UPDATE scans SET progress = 40 WHERE id = $1", [scan]);
  await publish(`scan-progress:${tenant}:${scan}`, "scan.progress", { scan, progress: 40 });
});

try {
  await inTransaction(async () => {
    await publish(`scan-progress:${tenant}:${scan}`, "scan.progress", { progress: 999 });
    throw new Error("the scan failed: this transaction and its event roll back");
  });
} catch {}

await client.end();
