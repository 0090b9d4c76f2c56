// The dead-letter view (#/dead): the events with a dead delivery, and "replay all dead" (POST
// /api/deliveries/replay?state=dead), which says how many deliveries went back to pending.
import { api } from './api.js';
import { el, append, announce } from './dom.js';
import { mountEvents } from './events.js';

export function mountDead(container) {
  const outcome = el('p', { role: 'status', class: 'outcome', id: 'bulk-outcome' });
  const button = el('button', { type: 'button', id: 'replay-dead', onclick: replayAll },
                    'Replay all dead');
  append(container, el('h1', { tabindex: '-1' }, 'Dead letters'),
         el('p', {}, 'Events with a delivery that gave up (a dead handler answer, or past its ',
            el('code', {}, 'max_attempts'), ').'),
         el('div', { class: 'actions' }, button), outcome);
  const list = mountEvents(container, { fixed: { state: 'dead' }, title: 'Dead letters',
                                        id: 'dead-events' });

  async function replayAll() {
    button.disabled = true;
    outcome.textContent = 'Replaying…';
    try {
      const answer = await api.replayState('dead');
      const n = Number(answer?.replayed) || 0;
      outcome.textContent = `Replayed ${n} dead ${n === 1 ? 'delivery' : 'deliveries'}.`;
      announce(outcome.textContent);
      list.reload();
    } catch (error) {
      outcome.textContent = `Replay failed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }
  return list;
}
