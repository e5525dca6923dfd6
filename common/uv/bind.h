// Binds a member function to the `void (*)(void* owner)` callbacks of Timer and ReadyCall, so
// arming either on the hot path allocates nothing:
//   Timer t(loop, this, &uv::bindMethod<Foo, &Foo::onTimeout>);
#pragma once

namespace loopguard::uv {

template <class Owner, void (Owner::*Method)()>
void bindMethod(void* owner) {
  (static_cast<Owner*>(owner)->*Method)();
}

}  // namespace loopguard::uv
