#include "common/intrusive_list.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace loopguard {
namespace {

struct Item : ListNode<Item> {
  explicit Item(int v) : value(v) {}
  int value;
};

std::vector<int> values(IntrusiveList<Item>& list) {
  std::vector<int> out;
  list.forEach([&](Item& i) { out.push_back(i.value); });
  return out;
}

TEST(IntrusiveList, KeepsOrderAndCount) {
  Item a(1), b(2), c(3);
  IntrusiveList<Item> list;
  list.pushBack(a);
  list.pushBack(b);
  list.pushFront(c);
  EXPECT_EQ(values(list), (std::vector<int>{3, 1, 2}));
  EXPECT_EQ(list.size(), 3u);
  EXPECT_EQ(list.popFront(), &c);
  EXPECT_FALSE(c.linked());
  EXPECT_EQ(list.size(), 2u);
}

TEST(IntrusiveList, AnItemLeavesTheListWhenDestroyed) {
  IntrusiveList<Item> list;
  Item a(1), c(3);
  list.pushBack(a);
  {
    Item b(2);
    list.pushBack(b);
    list.pushBack(c);
    EXPECT_EQ(list.size(), 3u);
  }
  EXPECT_EQ(values(list), (std::vector<int>{1, 3}));
  EXPECT_EQ(list.size(), 2u);
}

TEST(IntrusiveList, UnlinkAndRemoveAreNoOpsOutsideTheList) {
  IntrusiveList<Item> one, other;
  Item a(1);
  one.pushBack(a);
  other.remove(a);  // not its list
  EXPECT_TRUE(one.contains(a));
  EXPECT_FALSE(other.contains(a));
  a.unlink();
  a.unlink();
  EXPECT_TRUE(one.empty());
  other.pushBack(a);  // free to join another list now
  EXPECT_TRUE(other.contains(a));
}

TEST(IntrusiveList, ForEachMayUnlinkTheCurrentItem) {
  Item a(1), b(2), c(3);
  IntrusiveList<Item> list;
  list.pushBack(a);
  list.pushBack(b);
  list.pushBack(c);
  list.forEach([](Item& i) {
    if (i.value != 2) i.unlink();
  });
  EXPECT_EQ(values(list), (std::vector<int>{2}));
}

TEST(IntrusiveList, ItemsOutliveTheList) {
  Item a(1);
  {
    IntrusiveList<Item> list;
    list.pushBack(a);
  }
  EXPECT_FALSE(a.linked());
}

}  // namespace
}  // namespace loopguard
