namespace Weft.Lab;

/// <summary>How a lab router translates and filters traffic between its LAN and the public segment.</summary>
public enum NatMode
{
    /// <summary>Plain MASQUERADE: endpoint-independent, port-preserving mapping; only replies from the exact remote ip:port pass.</summary>
    PortRestrictedCone,

    /// <summary>MASQUERADE --random-fully: a new random public port per destination (endpoint-dependent mapping).</summary>
    Symmetric,

    /// <summary>MASQUERADE plus DNAT of every new inbound WAN flow to the LAN's first host ("a" host): packets from anyone reach a mapped port.</summary>
    FullCone,
}
