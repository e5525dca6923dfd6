// What a parser callback tells the parser to do next (instead of llhttp's 0 / -1 / magic ints).
#pragma once

namespace loopguard::http {

enum class ParserAction {
  Continue,  // go on parsing
  Pause,     // stop right after this callback; the driver resumes later
  SkipBody,  // from a response head only: the message has no body (HEAD, 204, 304)
  Fail,      // stop with an error; the callback's owner knows (and answers) why
};

}  // namespace loopguard::http
