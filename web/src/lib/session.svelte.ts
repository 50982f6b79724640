// Whether the gateway wants a login (token mode, no session yet): any request answered 401
// says so, and the app then shows how to log in instead of failing quietly.
class Session {
  needed = $state(false);
}

export const session = new Session();
