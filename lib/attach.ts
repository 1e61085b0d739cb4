// Members of a class defined in other files, one file per concern (sharp splits its one public
// class the same way): each file declares its members on the class's type (a module augmentation)
// and defines them here, as the class keyword defines its own: not enumerable.

/** Defines `members` on `target` (a class's prototype for methods, the class for static members). */
export function attachMembers<T extends object>(target: object, members: T): void {
  for (const name of Object.keys(members) as Array<keyof T & string>) {
    Object.defineProperty(target, name, { value: members[name], writable: true, configurable: true, enumerable: false });
  }
}
