// One thing a control asks of the server at a time: busy while it runs (controls disable
// themselves), and the server's refusal kept to show beside them.
export class Action {
  busy = $state(false);
  problem = $state<string | null>(null);

  /// Runs `request`; true when it went through.
  async run(request: () => Promise<unknown>): Promise<boolean> {
    this.busy = true;
    try {
      await request();
      this.problem = null;
      return true;
    } catch (error) {
      this.problem = (error as Error).message;
      return false;
    } finally {
      this.busy = false;
    }
  }
}
