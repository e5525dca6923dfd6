// A set of objects that lives on the loop and that its owner holds: the one lifetime rule for
// objects with callbacks of their own (connections, probes), which must outlive the callback
// that ends them.
//
//  - emplace() (or emplaceIn(), for a slab) is the one place such an object is created (no raw
//    `new` elsewhere);
//  - retire() takes it out of the set and hands it to the loop's deferred delete
//    (uv::Loop::deferDelete): it is destroyed at the end of the loop turn, once nothing on the
//    stack can refer to it any more. An object never deletes itself; it asks its set;
//  - the set's destruction destroys what it still holds (their handles close themselves, see
//    uv::Handle).
//
// Membership is intrusive (T derives from ListNode<Tag>), so retiring is O(1) and iterating
// allocates nothing.
#pragma once

#include <uv.h>

#include <memory>
#include <utility>

#include "common/intrusive_list.h"
#include "common/slab.h"
#include "common/uv/loop.h"

namespace loopguard {

template <class T, class Tag = T>
class OwnedList {
 public:
  OwnedList() = default;
  ~OwnedList() { clear(); }
  OwnedList(const OwnedList&) = delete;
  OwnedList& operator=(const OwnedList&) = delete;

  template <class... Args>
  T& emplace(Args&&... args) {
    auto object = std::make_unique<T>(std::forward<Args>(args)...);
    T& ref = *object;
    list_.pushBack(*object.release());
    return ref;
  }

  // The same, the object in `slab` (T derives from SlabAllocated): for objects that every open
  // connection holds for its life.
  template <class... Args>
  T& emplaceIn(Slab& slab, Args&&... args) {
    static_assert(alignof(T) <= Slab::kAlign, "a slab's blocks are only Slab::kAlign-aligned");
    T* object = new (slab) T(std::forward<Args>(args)...);
    list_.pushBack(*object);
    return *object;
  }

  // `object` leaves the set now and is destroyed at the end of this loop turn.
  void retire(uv_loop_t* loop, T& object) {
    if (!list_.contains(object)) return;
    list_.remove(object);
    uv::Loop::of(loop).deferDelete(std::unique_ptr<T>(&object));
  }

  // Destroys every object still held, now (the owner is going away).
  void clear() {
    while (T* object = list_.popFront()) delete object;
  }

  size_t size() const { return list_.size(); }
  bool empty() const { return list_.empty(); }
  bool contains(const T& object) const { return list_.contains(object); }
  // fn(T&), oldest first; fn may retire the object it is given.
  template <class Fn>
  void forEach(Fn&& fn) {
    list_.forEach(std::forward<Fn>(fn));
  }

 private:
  IntrusiveList<T, Tag> list_;
};

}  // namespace loopguard
