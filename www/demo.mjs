import init, { TokenClient } from "/pkg/speech_token_client.js";

await init();
const client = new TokenClient({ brokerUrl: "/api/speech-token" });
await client.getToken();
document.getElementById("status").textContent = `status: ${client.status}, expires ${new Date(client.expiresAt).toISOString()}`;
