-- LiveKit call feedback, as the seed's application had it before its fix (seed 001):
-- a feedback row per room, created when the call starts ('initiated'), analysed by an LLM
-- when LiveKit reports room_finished ('completed'), or abandoned ('dropped').
-- Kept exactly as deployed so 0003 is proven against the schema that exists in the field.

CREATE TYPE feedback_status AS ENUM ('initiated', 'completed', 'dropped');

CREATE TABLE user_feedback (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     text,
    room_sid    text,            -- LiveKit room sid (RM_...), known once the room exists
    room_name   text NOT NULL,
    status      feedback_status NOT NULL DEFAULT 'initiated',
    transcript  text,            -- what the analysis reads
    analysis    jsonb,           -- the LLM's result
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_feedback_room_sid_idx ON user_feedback (room_sid);
CREATE INDEX user_feedback_room_name_idx ON user_feedback (room_name);
