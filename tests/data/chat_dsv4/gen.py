import sys, json
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else '.')
import encoding_dsv4 as e

tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}]
calls = [{"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
         {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\", \"days\": 2, \"opts\": {\"unit\": \"C\", \"x\": [1, 2.5, true, null]}}"}}]
cases = [
 ("chat", dict(thinking_mode="chat"), [
   {"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"},
   {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}]),
 ("thinking_drop", dict(thinking_mode="thinking"), [
   {"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"},
   {"role": "assistant", "content": "Hello!", "reasoning_content": "r1"}, {"role": "user", "content": "How are you?"}]),
 ("thinking_keep", dict(thinking_mode="thinking", drop_thinking=False), [
   {"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"},
   {"role": "assistant", "content": "Hello!", "reasoning_content": "r1"}, {"role": "user", "content": "How are you?"}]),
 ("thinking_max", dict(thinking_mode="thinking", reasoning_effort="max"), [
   {"role": "user", "content": "Prove it."}]),
 ("tools_chat", dict(thinking_mode="chat"), [
   {"role": "system", "content": "sys", "tools": tools}, {"role": "user", "content": "Weather in Paris and Rome?"},
   {"role": "assistant", "content": "", "tool_calls": calls},
   {"role": "tool", "tool_call_id": "b", "content": "15C"}, {"role": "tool", "tool_call_id": "a", "content": "20C"}]),
 ("tools_thinking", dict(thinking_mode="thinking"), [
   {"role": "system", "content": "sys", "tools": tools}, {"role": "user", "content": "Weather in Paris?"},
   {"role": "assistant", "content": None, "reasoning_content": "call it", "tool_calls": calls[:1]},
   {"role": "tool", "tool_call_id": "a", "content": "20C"}, {"role": "user", "content": "Thanks, and Rome?"}]),
 ("developer", dict(thinking_mode="chat"), [
   {"role": "developer", "content": "Be brief.", "response_format": {"type": "json_object"}},
   {"role": "user", "content": "Привет \"q\"\n"}, {"role": "latest_reminder", "content": "Remember: JSON."},
   {"role": "assistant", "content": "{}"}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
 ("raw_args", dict(thinking_mode="chat"), [
   {"role": "user", "content": "go"},
   {"role": "assistant", "content": "ok", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "not json"}}]},
   {"role": "tool", "content": "done"}]),
]
out = {}
for name, kw, msgs in cases:
    out[name] = e.encode_messages(msgs, **kw)
json.dump(out, open('expected.json', 'w'), ensure_ascii=False, indent=1)

