-- Accounts get a plan; existing accounts start on 'free'.
ALTER TABLE {{tables.accounts}}
    ADD COLUMN plan text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'team', 'enterprise'));
CREATE INDEX accounts_plan ON {{tables.accounts}} (plan);
