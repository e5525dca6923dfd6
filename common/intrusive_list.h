// Intrusive doubly linked lists whose nodes unlink themselves.
//
// A node lives inside the object it links (queueing allocates nothing), knows the list it is
// in, and leaves it when it is unlinked or destroyed. So a wait that is cancelled, or an object
// that goes away, never leaves a dangling pointer in a queue, and nothing ever scans a queue to
// take an entry out: removal is O(1) from the node alone.
//
// An object derives from ListNode<Tag> once per kind of list it can be in, and
// IntrusiveList<T, Tag> holds such objects (Tag defaults to T itself; a second kind of list
// needs a Tag of its own). A node is in at most one list at a time.
#pragma once

#include <cassert>
#include <cstddef>

namespace loopguard {

class ListBase;

class ListLink {
 public:
  ListLink() = default;
  ~ListLink() { unlink(); }
  ListLink(const ListLink&) = delete;
  ListLink& operator=(const ListLink&) = delete;

  bool linked() const { return list_ != nullptr; }
  // Leaves the list it is in; a no-op when it is in none.
  inline void unlink();

 private:
  friend class ListBase;
  ListLink* prev_ = nullptr;
  ListLink* next_ = nullptr;
  ListBase* list_ = nullptr;
};

template <class Tag = void>
class ListNode : public ListLink {};

class ListBase {
 public:
  ListBase() = default;
  // Entries still linked are unlinked (their objects live on, in no list).
  ~ListBase() {
    while (head_ != nullptr) head_->unlink();
  }
  ListBase(const ListBase&) = delete;
  ListBase& operator=(const ListBase&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 protected:
  void linkBack(ListLink& l) {
    assert(!l.linked() && "a node is in one list at a time");
    l.list_ = this;
    l.prev_ = tail_;
    l.next_ = nullptr;
    if (tail_ != nullptr) {
      tail_->next_ = &l;
    } else {
      head_ = &l;
    }
    tail_ = &l;
    ++size_;
  }
  void linkFront(ListLink& l) {
    assert(!l.linked() && "a node is in one list at a time");
    l.list_ = this;
    l.prev_ = nullptr;
    l.next_ = head_;
    if (head_ != nullptr) {
      head_->prev_ = &l;
    } else {
      tail_ = &l;
    }
    head_ = &l;
    ++size_;
  }
  bool holds(const ListLink& l) const { return l.list_ == this; }
  ListLink* head() const { return head_; }
  static ListLink* next(const ListLink& l) { return l.next_; }

 private:
  friend class ListLink;
  void remove(ListLink& l) {
    if (l.prev_ != nullptr) {
      l.prev_->next_ = l.next_;
    } else {
      head_ = l.next_;
    }
    if (l.next_ != nullptr) {
      l.next_->prev_ = l.prev_;
    } else {
      tail_ = l.prev_;
    }
    l.prev_ = l.next_ = nullptr;
    l.list_ = nullptr;
    --size_;
  }

  ListLink* head_ = nullptr;
  ListLink* tail_ = nullptr;
  size_t size_ = 0;
};

inline void ListLink::unlink() {
  if (list_ != nullptr) list_->remove(*this);
}

template <class T, class Tag = T>
class IntrusiveList : public ListBase {
 public:
  void pushBack(T& item) { linkBack(link(item)); }
  void pushFront(T& item) { linkFront(link(item)); }
  T* front() const { return head() != nullptr ? &object(*head()) : nullptr; }
  T* popFront() {
    T* item = front();
    if (item != nullptr) link(*item).unlink();
    return item;
  }
  bool contains(const T& item) const { return holds(link(item)); }
  void remove(T& item) {
    if (contains(item)) link(item).unlink();
  }
  // Calls fn(T&) for each entry, oldest first. fn may unlink the entry it is given (only that
  // one: the next entry is read before the call).
  template <class Fn>
  void forEach(Fn&& fn) {
    for (ListLink* l = head(); l != nullptr;) {
      ListLink* after = next(*l);
      fn(object(*l));
      l = after;
    }
  }

 private:
  using Node = ListNode<Tag>;
  static ListLink& link(T& item) { return static_cast<Node&>(item); }
  static const ListLink& link(const T& item) { return static_cast<const Node&>(item); }
  static T& object(ListLink& l) { return static_cast<T&>(static_cast<Node&>(l)); }
};

}  // namespace loopguard
