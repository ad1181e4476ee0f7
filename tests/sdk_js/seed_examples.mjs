// The seed document's JavaScript examples (conferences, queues, webhooks), run with the official
// `telnyx` npm SDK against a callroom node. Only the client's baseURL differs from the seed's code;
// the placeholder ids of the seed are replaced by real ones prepared by tests/sdk_js/test_seed_js.py.
//
// Environment:
//   BASE_URL            the node's API root, e.g. http://127.0.0.1:8080/v2
//   TELNYX_API_KEY      an API key of the account
//   TELNYX_PUBLIC_KEY   the node's webhook public key (read by the SDK itself for webhooks.unwrap)
//   CALL_A, CALL_B      two answered, parked calls (conference host and a second participant)
//   CALL_Q              an answered, parked call to put in a queue
//   CALL_DEAD           a call kept in QUEUE_NAME after it hung up (keep_after_hangup)
//   QUEUE_NAME          the queue CALL_DEAD waits in
//   CONFERENCE_NAME     a name for the conference to create
//   WEBHOOK_BODY        the raw body of one webhook the node delivered
//   WEBHOOK_HEADERS     that delivery's headers, as a JSON object
//
// Prints one JSON document on stdout: what every step returned.

import Telnyx from 'telnyx';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`missing environment variable ${name}`);
  return value;
};

const client = new Telnyx({
  apiKey: process.env['TELNYX_API_KEY'], // This is the default and can be omitted
  baseURL: env('BASE_URL'),
});

const CALL_A = env('CALL_A');
const CALL_B = env('CALL_B');
const CALL_Q = env('CALL_Q');
const CALL_DEAD = env('CALL_DEAD');
const QUEUE = env('QUEUE_NAME');
const CONFERENCE_NAME = env('CONFERENCE_NAME');

const out = {};

// -- queues: a call waits, is looked at, and leaves ------------------------------------------------------

{
  const response = await client.calls.actions.enqueue(CALL_Q, { queue_name: QUEUE });
  out.enqueue = response.data;
}
{
  const seen = [];
  // Automatically fetches more pages as needed.
  for await (const callListResponse of client.queues.calls.list(QUEUE)) {
    seen.push(callListResponse);
  }
  out.queue_calls_list = seen;
}
{
  const paged = [];
  for await (const callListResponse of client.queues.calls.list(QUEUE, { 'page[size]': 1 })) {
    paged.push(callListResponse.call_control_id);
  }
  out.queue_calls_list_paged = paged;
}
{
  const call = await client.queues.calls.retrieve(CALL_Q, { queue_name: QUEUE });
  out.queue_call_retrieve = call.data;
}
{
  out.queue_call_update = (await client.queues.calls.update(CALL_Q, { queue_name: QUEUE })) ?? null;
  out.queue_call_update_keep = (await client.queues.calls.update(CALL_Q, { queue_name: QUEUE, keep_after_hangup: true })) ?? null;
}
{
  out.queue_call_remove = (await client.queues.calls.remove(CALL_DEAD, { queue_name: QUEUE })) ?? null;
}
{
  const response = await client.calls.actions.leaveQueue(CALL_Q);
  out.leave_queue = response.data;
}
{
  const after = [];
  for await (const callListResponse of client.queues.calls.list(QUEUE)) {
    after.push(callListResponse.call_control_id);
  }
  out.queue_calls_after = after;
}

// -- queues: create, retrieve, update, list, delete --------------------------------------------------------

{
  const names = ['tier_1_support', 'tier_2_support', 'tier_3_support'];
  out.queue_create = [];
  for (const queue_name of names) {
    const queue = await client.queues.create({ queue_name });
    out.queue_create.push(queue.data);
  }
  out.queue_retrieve = (await client.queues.retrieve('tier_1_support')).data;
  out.queue_update = (await client.queues.update('tier_1_support', { max_size: 200 })).data;

  const listed = [];
  // Automatically fetches more pages as needed.
  for await (const queue of client.queues.list()) {
    listed.push(queue);
  }
  out.queue_list = listed;
  const pagedNames = [];
  for await (const queue of client.queues.list({ 'page[size]': 2 })) {
    pagedNames.push(queue.name);
  }
  out.queue_list_paged = pagedNames;

  out.queue_delete = (await client.queues.delete('tier_3_support')) ?? null;
  try {
    await client.queues.retrieve('tier_3_support');
    out.queue_retrieve_deleted = { status: 200 };
  } catch (err) {
    out.queue_retrieve_deleted = describe(err);
  }
}

// -- conferences -----------------------------------------------------------------------------------------

const conference = await client.conferences.create({
  call_control_id: CALL_A,
  name: CONFERENCE_NAME,
});
out.conference_create = conference.data;
const id = conference.data.id;

{
  const listed = [];
  // Automatically fetches more pages as needed.
  for await (const conference of client.conferences.list()) {
    listed.push(conference);
  }
  out.conference_list = listed;
}
out.conference_retrieve = (await client.conferences.retrieve(id)).data;
out.join = (await client.conferences.actions.join(id, { call_control_id: CALL_B })).data;

async function participants() {
  const rows = [];
  // Automatically fetches more pages as needed.
  for await (const conferenceListParticipantsResponse of client.conferences.listParticipants(id)) {
    rows.push(conferenceListParticipantsResponse);
  }
  return rows;
}

out.participants = await participants();
const participantB = out.participants.find((p) => p.call_control_id === CALL_B);
const participantA = out.participants.find((p) => p.call_control_id === CALL_A);
if (!participantA || !participantB) throw new Error(`participants not listed: ${JSON.stringify(out.participants)}`);

out.mute = (await client.conferences.actions.mute(id)).data;
out.participants_muted = await participants();
out.retrieve_participant_muted = (await client.conferences.retrieveParticipant(participantB.id, { id })).data;
out.unmute = (await client.conferences.actions.unmute(id)).data;
out.hold = (await client.conferences.actions.hold(id)).data;
out.participants_held = await participants();
out.unhold = (await client.conferences.actions.unhold(id, { call_control_ids: [CALL_B] })).data;
out.participants_after_unhold = await participants();
out.update = (await client.conferences.actions.update(id, {
  call_control_id: CALL_A,
  supervisor_role: 'whisper',
})).data;
out.retrieve_participant = (await client.conferences.retrieveParticipant(participantB.id, { id })).data;
out.update_participant = (await client.conferences.updateParticipant(participantB.id, { id })).data;
// The host stays until the end; flagging it (not the leaving guest) keeps the conference alive below.
out.update_participant_exit = (await client.conferences.updateParticipant(participantA.id, {
  id,
  end_conference_on_exit: true,
})).data;
out.leave = (await client.conferences.actions.leave(id, { call_control_id: CALL_B })).data;
out.participants_after_leave = await participants();
out.end_conference = (await client.conferences.actions.endConference(id)).data;
out.conference_after_end = (await client.conferences.retrieve(id)).data;

// -- errors, as the seed's error-handling example expects them -------------------------------------------

function describe(err) {
  if (err instanceof Telnyx.APIError) {
    return {
      api_error: true,
      class: err.constructor.name,
      status: err.status,
      not_found: err instanceof Telnyx.NotFoundError,
      unprocessable: err instanceof Telnyx.UnprocessableEntityError,
      errors: err.error?.errors ?? null,
    };
  }
  return { api_error: false, class: err?.constructor?.name ?? typeof err, message: String(err?.message ?? err) };
}

try {
  await client.conferences.retrieve('00000000-0000-4000-8000-000000000000');
  out.error_not_found = { status: 200 };
} catch (err) {
  out.error_not_found = describe(err);
}
try {
  await client.queues.update('tier_1_support', { max_size: 0 });
  out.error_validation = { status: 200 };
} catch (err) {
  out.error_validation = describe(err);
}

// -- webhooks: verify one real delivery --------------------------------------------------------------------

{
  const body = env('WEBHOOK_BODY');
  const headers = JSON.parse(env('WEBHOOK_HEADERS'));
  const event = await client.webhooks.unwrap(body, {
    headers: headers,
  });
  out.webhook_unwrap = event;
  try {
    await client.webhooks.unwrap(body.replace('"event_type"', '"event_type" '), { headers });
    out.webhook_tampered = { verified: true };
  } catch (err) {
    out.webhook_tampered = { verified: false, class: err.constructor.name, message: err.message };
  }
}

process.stdout.write(JSON.stringify(out) + '\n');
