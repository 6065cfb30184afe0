package broker

// mayRead asks Options.AuthorizeRead, which is set, whether cl may receive a
// message published to name. The hook runs with no lock held, so that it may
// call the Server.
func (s *Server) mayRead(cl *client, name []byte) bool {
	cl.mu.Lock()
	info := cl.info
	cl.mu.Unlock()
	if info == nil {
		return false // no connection yet: no subscription either
	}
	return s.opts.AuthorizeRead(info, name)
}

// readable keeps the messages of rets that info may read
// (Options.AuthorizeRead, which is set), in place, and clears the rest.
func (s *Server) readable(info *Client, rets []*retainedMsg) []*retainedMsg {
	kept := rets[:0]
	for _, m := range rets {
		if s.opts.AuthorizeRead(info, m.topic()) {
			kept = append(kept, m)
		}
	}
	clear(rets[len(kept):])
	return kept
}
